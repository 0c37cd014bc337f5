// Thin C for what Swift's Glibc module hides or cannot do safely: pseudo-terminals, a spawn
// primitive with the hooks a container runtime needs, and pidfds. No policy lives here.
#ifndef EXECSTREAM_CEXECSYS_H
#define EXECSTREAM_CEXECSYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// A unix socket peer's credentials, as getsockopt(SOL_SOCKET, SO_PEERCRED) fills them (the
/// layout of glibc's `struct ucred`, which Swift's Glibc module hides without _GNU_SOURCE).
typedef struct {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
} execstream_peer_credentials;

/// SO_PEERCRED, for getsockopt.
static const int execstream_so_peercred = 17;

/// Opens a pseudo-terminal master (O_RDWR | O_NOCTTY | O_CLOEXEC), grants and unlocks it, and
/// writes the slave's path into `slave_path`. Returns the master fd, or -1 with errno set.
int execstream_open_pty(char *slave_path, size_t slave_path_size);

/// Sets a terminal's window size (TIOCSWINSZ). Returns 0, or -1 with errno set.
int execstream_set_window_size(int fd, unsigned short rows, unsigned short columns);

/// Reads a terminal's window size (TIOCGWINSZ). Returns 0, or -1 with errno set.
int execstream_get_window_size(int fd, unsigned short *rows, unsigned short *columns);

/// What the child does between clone and execve, in this order: leave the parent's session
/// (setsid), join namespaces (setns on each fd), in new namespaces set the hostname and mount a
/// /proc of its own, make the pty slave its controlling terminal and
/// stdio, or dup2 the given fds onto 0/1/2, change directory, drop to group/supplementary
/// groups/user, reset every signal disposition and unblock all signals, close every fd above 2,
/// execve.
typedef struct {
    const char *path;           ///< the executable, already resolved
    char *const *argv;          ///< NULL-terminated
    char *const *envp;          ///< NULL-terminated
    const char *working_directory; ///< NULL: inherit
    const char *pty_slave_path; ///< non-NULL: tty mode, stdio is this terminal
    int stdin_fd;               ///< without a pty: dup2'd onto 0 (-1: /dev/null)
    int stdout_fd;              ///< without a pty: dup2'd onto 1 (-1: /dev/null)
    int stderr_fd;              ///< without a pty: dup2'd onto 2 (-1: /dev/null)
    long uid;                   ///< -1: keep
    long gid;                   ///< -1: keep
    const gid_t *groups;        ///< with gid >= 0: the supplementary groups (may be empty)
    size_t group_count;
    const int *namespace_fds;   ///< setns targets, joined in order by the child (not pid)
    size_t namespace_count;
    int pid_namespace_fd;       ///< >= 0: the child is born in this pid namespace (the spawning
                                ///< thread sets its pid_for_children around clone, then restores it)
    int new_namespaces;         ///< extra clone flags: CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWUTS|CLONE_NEWIPC
    const char *hostname;       ///< with CLONE_NEWUTS: the hostname to set (NULL: keep)
} execstream_spawn_request;

/// The clone flags of a container's own namespaces: mount, pid, uts, ipc.
int execstream_container_namespace_flags(void);

/// Spawns a child as described. On success returns 0 and sets `*pid` and `*pidfd` (a pidfd,
/// O_CLOEXEC, for waiting without blocking anyone). On failure returns -1: `*failed_step`
/// names the step that failed ("clone", "setsid", "setns", "setns-pid", "sethostname",
/// "mount-private", "mount-proc", "open-tty", "dup2", "chdir", "setgroups", "setgid", "setuid",
/// "execve", "pidfd") and errno says why.
int execstream_spawn(const execstream_spawn_request *request, pid_t *pid, int *pidfd, const char **failed_step);

/// Reaps the child behind `pidfd` if it has exited (waitid(P_PIDFD, WEXITED | WNOHANG)).
/// Returns 1 and sets `*exit_code` (normal exit) or `*signal` (killed), 0 if it is still
/// running, -1 with errno on error.
int execstream_reap(int pidfd, int *exit_code, int *signal);

/// Sends `signal` to the process group `pgid` (kill(-pgid, signal)). Returns 0 or -1 with errno.
int execstream_kill_group(pid_t pgid, int signal);

/// pipe2(fds, O_CLOEXEC). Returns 0 or -1 with errno.
int execstream_pipe(int fds[2]);

/// Stops watching `pidfd`. Returns 0 or -1 with errno.
int execstream_reaper_remove(int epoll_fd, int pidfd);

/// An epoll instance for pidfds (EPOLL_CLOEXEC). Returns the fd, or -1 with errno.
int execstream_reaper_create(void);

/// Watches `pidfd` for its process's exit, once (EPOLLIN | EPOLLONESHOT). Returns 0 or -1.
int execstream_reaper_add(int epoll_fd, int pidfd);

/// Waits for exits; writes up to `capacity` ready pidfds and returns how many (or -1 with errno;
/// EINTR is retried inside).
int execstream_reaper_wait(int epoll_fd, int *pidfds, int capacity);

#endif
