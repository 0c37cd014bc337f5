#define _GNU_SOURCE
#include "CExecSys.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

int execstream_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int execstream_reaper_remove(int epoll_fd, int pidfd) {
    return epoll_ctl(epoll_fd, EPOLL_CTL_DEL, pidfd, NULL);
}

int execstream_reaper_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int execstream_reaper_add(int epoll_fd, int pidfd) {
    struct epoll_event event = {.events = EPOLLIN | EPOLLONESHOT, .data = {.fd = pidfd}};
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, pidfd, &event);
}

int execstream_reaper_wait(int epoll_fd, int *pidfds, int capacity) {
    struct epoll_event events[64];
    if (capacity > 64) capacity = 64;
    int count;
    do {
        count = epoll_wait(epoll_fd, events, capacity, -1);
    } while (count < 0 && errno == EINTR);
    for (int i = 0; i < count; i++) {
        pidfds[i] = events[i].data.fd;
    }
    return count;
}
