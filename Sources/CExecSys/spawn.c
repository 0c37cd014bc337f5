#define _GNU_SOURCE
#include "CExecSys.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int execstream_open_pty(char *slave_path, size_t slave_path_size) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -1;
    if (grantpt(master) != 0 || unlockpt(master) != 0 || ptsname_r(master, slave_path, slave_path_size) != 0) {
        int saved = errno;
        close(master);
        errno = saved;
        return -1;
    }
    return master;
}

int execstream_set_window_size(int fd, unsigned short rows, unsigned short columns) {
    struct winsize size = {.ws_row = rows, .ws_col = columns};
    return ioctl(fd, TIOCSWINSZ, &size);
}

int execstream_get_window_size(int fd, unsigned short *rows, unsigned short *columns) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) != 0) {
        return -1;
    }
    *rows = size.ws_row;
    *columns = size.ws_col;
    return 0;
}

/// Shared with the child (CLONE_VM): the request, and where it reports a failure before exec.
typedef struct {
    const execstream_spawn_request *request;
    volatile int error;
    const char *volatile failed_step;
} spawn_context;

/// Runs in the child, on its own stack, sharing the parent's memory until execve: only
/// async-signal-safe calls, no allocation, no locks.
static int spawn_child(void *argument) {
    spawn_context *context = argument;
    const execstream_spawn_request *request = context->request;
#define FAIL(step) do { context->error = errno; context->failed_step = (step); _exit(127); } while (0)
    if (setsid() < 0) FAIL("setsid");
    for (size_t i = 0; i < request->namespace_count; i++) {
        if (setns(request->namespace_fds[i], 0) != 0) FAIL("setns");
    }
    if ((request->new_namespaces & CLONE_NEWUTS) && request->hostname != NULL) {
        if (sethostname(request->hostname, strlen(request->hostname)) != 0) FAIL("sethostname");
    }
    if ((request->new_namespaces & CLONE_NEWNS) && (request->new_namespaces & CLONE_NEWPID)) {
        // Our mounts must not propagate back to the host, and ps must see this pid namespace.
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) FAIL("mount-private");
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) FAIL("mount-proc");
    }
    if (request->pty_slave_path != NULL) {
        // Opened without O_NOCTTY by a session leader with no terminal: it becomes the
        // controlling terminal of the new session.
        int tty = open(request->pty_slave_path, O_RDWR);
        if (tty < 0) FAIL("open-tty");
        if (dup2(tty, 0) < 0 || dup2(tty, 1) < 0 || dup2(tty, 2) < 0) FAIL("dup2");
        if (tty > 2) close(tty);
    } else {
        int fds[3] = {request->stdin_fd, request->stdout_fd, request->stderr_fd};
        int null_fd = -1;
        for (int target = 0; target < 3; target++) {
            int source = fds[target];
            if (source < 0) {
                if (null_fd < 0) {
                    null_fd = open("/dev/null", O_RDWR);
                    if (null_fd < 0) FAIL("open-null");
                }
                source = null_fd;
            }
            // dup2 onto itself would keep O_CLOEXEC: clear the flag in that case instead.
            if (source == target) {
                if (fcntl(target, F_SETFD, 0) < 0) FAIL("dup2");
            } else if (dup2(source, target) < 0) {
                FAIL("dup2");
            }
        }
    }
    if (request->working_directory != NULL && chdir(request->working_directory) != 0) FAIL("chdir");
    if (request->gid >= 0) {
        if (setgroups(request->group_count, request->groups) != 0) FAIL("setgroups");
        if (setgid((gid_t)request->gid) != 0) FAIL("setgid");
    }
    if (request->uid >= 0 && setuid((uid_t)request->uid) != 0) FAIL("setuid");
    // Default dispositions for every signal, then an empty mask (the parent blocked them all).
    // The raw system call: glibc's sigaction refuses its internal signals (32, 33), and an
    // ignored disposition there would otherwise survive execve.
    struct {
        void *handler;
        unsigned long flags;
        void *restorer;
        unsigned long long mask;
    } default_action = {.handler = SIG_DFL, .flags = 0, .restorer = NULL, .mask = 0};
    for (int signal_number = 1; signal_number <= 64; signal_number++) {
        syscall(SYS_rt_sigaction, signal_number, &default_action, NULL, sizeof default_action.mask);
    }
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    // Only 0, 1 and 2 may cross into the new program, whatever other code opened without
    // O_CLOEXEC. close_range is Linux 5.9+; otherwise close a bounded range one by one.
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
        struct rlimit limit;
        long maximum = (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) ? (long)limit.rlim_cur : 65536;
        if (maximum > 65536) maximum = 65536;
        for (long fd = 3; fd < maximum; fd++) close((int)fd);
    }
    execve(request->path, request->argv, request->envp);
    FAIL("execve");
#undef FAIL
}

int execstream_spawn(const execstream_spawn_request *request, pid_t *pid, int *pidfd, const char **failed_step) {
    const size_t stack_size = 64 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        *failed_step = "clone";
        return -1;
    }
    spawn_context context = {.request = request, .error = 0, .failed_step = NULL};
    // No signal handler may run in the child while it shares our memory.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    // A pid namespace cannot be joined from inside the child: the calling thread's
    // pid_for_children is set around clone instead, and restored at once (it is per thread).
    int own_pid_namespace = -1;
    if (request->pid_namespace_fd >= 0) {
        own_pid_namespace = open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC);
        if (own_pid_namespace < 0 || setns(request->pid_namespace_fd, CLONE_NEWPID) != 0) {
            int saved = errno;
            if (own_pid_namespace >= 0) close(own_pid_namespace);
            pthread_sigmask(SIG_SETMASK, &previous, NULL);
            munmap(stack, stack_size);
            *failed_step = "setns-pid";
            errno = saved;
            return -1;
        }
    }
    // CLONE_VFORK: we resume once the child has exec'd or exited, so `context` is settled.
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD | request->new_namespaces;
    pid_t child = clone(spawn_child, (char *)stack + stack_size, flags, &context);
    int clone_errno = errno;
    if (own_pid_namespace >= 0) {
        setns(own_pid_namespace, CLONE_NEWPID);
        close(own_pid_namespace);
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    munmap(stack, stack_size);
    if (child < 0) {
        *failed_step = "clone";
        errno = clone_errno;
        return -1;
    }
    if (context.failed_step != NULL) {
        int status;
        waitpid(child, &status, 0);
        *failed_step = context.failed_step;
        errno = context.error;
        return -1;
    }
    int fd = (int)syscall(SYS_pidfd_open, child, 0);
    if (fd < 0) {
        // Without a pidfd nobody could wait for it: do not leave it running unobserved.
        int saved = errno;
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        *failed_step = "pidfd";
        errno = saved;
        return -1;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    *pid = child;
    *pidfd = fd;
    return 0;
}

int execstream_container_namespace_flags(void) {
    return CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
}

int execstream_reap(int pidfd, int *exit_code, int *signal_number) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG) != 0) return -1;
    if (info.si_pid == 0) return 0;
    if (info.si_code == CLD_EXITED) {
        *exit_code = info.si_status;
        *signal_number = 0;
    } else {
        *exit_code = -1;
        *signal_number = info.si_status;
    }
    return 1;
}

int execstream_kill_group(pid_t pgid, int signal_number) {
    return kill(-pgid, signal_number);
}
