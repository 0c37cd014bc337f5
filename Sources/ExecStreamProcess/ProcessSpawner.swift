import CExecSys
public import ExecStreamCore

#if canImport(Glibc)
import Glibc
#endif

/// What to run and how.
public struct ProcessConfiguration: Hashable, Sendable {
    /// How the child's stdio is wired.
    public enum Stdio: Hashable, Sendable {
        /// Three pipes (or /dev/null for streams not requested).
        case pipes(stdin: Bool, stdout: Bool, stderr: Bool)
        /// A pseudo-terminal: stdin, stdout and stderr are its slave; the child is its session
        /// leader with it as controlling terminal. The size, if given, is set before the child runs.
        case terminal(initialSize: TerminalSize?)
    }

    /// argv[0] names the executable: a path, or a name looked up on PATH (of `environment`).
    public var arguments: [String]
    /// The complete environment, as `NAME=value`.
    public var environment: [String]
    /// Where the child starts; nil inherits the server's.
    public var workingDirectory: String?
    /// How stdio is wired.
    public var stdio: Stdio
    /// Credentials to drop to (both nil: keep the server's).
    public var userID: UInt32?
    /// The primary group to drop to.
    public var groupID: UInt32?
    /// Supplementary groups (set only with `groupID`).
    public var supplementaryGroups: [UInt32]
    /// The namespaces the child lives in.
    public var namespaces: Namespaces = .inherited

    /// Which namespaces a child lives in (all but `inherited` need root).
    public enum Namespaces: Hashable, Sendable {
        /// The server's own.
        case inherited
        /// New mount, pid, uts and ipc namespaces: the child is pid 1 of its own pid namespace,
        /// with its own /proc and this hostname. A container's main process.
        case new(hostname: String?)
        /// Those of the running process `pid`, as `nsenter -t PID -m -p -u -i` joins them: an
        /// exec in a container.
        case joining(pid: Int32)
    }

    public init(
        arguments: [String],
        environment: [String] = ProcessConfiguration.defaultEnvironment,
        workingDirectory: String? = nil,
        stdio: Stdio = .pipes(stdin: false, stdout: true, stderr: true),
        userID: UInt32? = nil,
        groupID: UInt32? = nil,
        supplementaryGroups: [UInt32] = []
    ) {
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.stdio = stdio
        self.userID = userID
        self.groupID = groupID
        self.supplementaryGroups = supplementaryGroups
    }

    /// What a container's process gets when nothing else is said (as runc's default spec).
    public static let defaultEnvironment = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"]
}

/// A started child. The parent's ends of its stdio belong to the caller, who must close them;
/// `pidfd` is for `ProcessReaper.waitForExit`, which closes it.
public struct SpawnedProcess: Hashable, Sendable {
    /// The child's pid; it leads its own session and process group (pgid == pid).
    public var pid: Int32
    /// A pidfd for the child.
    public var pidfd: Int32
    /// Write end of the child's stdin pipe, or the pty master (tty mode).
    public var stdin: Int32?
    /// Read end of the child's stdout pipe, or the pty master (tty mode, same fd as `stdin`).
    public var stdout: Int32?
    /// Read end of the child's stderr pipe (never in tty mode: it shares the terminal).
    public var stderr: Int32?
    /// The pty master in tty mode (for resizes), else nil.
    public var terminal: Int32?
}

/// Starts children with `execstream_spawn` (clone(CLONE_VM|CLONE_VFORK), never fork: its cost
/// grows with the server's memory). File descriptors are created O_CLOEXEC, so a child only ever
/// inherits its own three.
public enum ProcessSpawner {
    /// Spawns `configuration`. Throws `executableNotFound` before forking anything when the
    /// command names nothing runnable.
    public static func spawn(_ configuration: ProcessConfiguration) throws(ProcessError) -> SpawnedProcess {
        guard let command = configuration.arguments.first, !command.isEmpty else {
            throw ProcessError(code: .executableNotFound, message: "exec: no command given")
        }
        let path = try self.resolve(command, environment: configuration.environment)
        var parentEnds: [Int32] = []
        var childEnds: [Int32] = []
        defer {
            for fd in childEnds where fd >= 0 {
                close(fd)
            }
        }
        var result = SpawnedProcess(pid: 0, pidfd: -1, stdin: nil, stdout: nil, stderr: nil, terminal: nil)
        var stdioFDs: (Int32, Int32, Int32) = (-1, -1, -1)
        var slavePath: String?
        do throws(ProcessError) {
            switch configuration.stdio {
            case .pipes(let wantsStdin, let wantsStdout, let wantsStderr):
                /// A pipe whose one end the child gets as `target` and whose other end we keep.
                func pipe(childReads: Bool) throws(ProcessError) -> (child: Int32, parent: Int32) {
                    let (read, write) = try self.makePipe()
                    let ends = childReads ? (child: read, parent: write) : (child: write, parent: read)
                    childEnds.append(ends.child)
                    parentEnds.append(ends.parent)
                    return ends
                }
                if wantsStdin {
                    (stdioFDs.0, result.stdin) = try pipe(childReads: true)
                }
                if wantsStdout {
                    (stdioFDs.1, result.stdout) = try pipe(childReads: false)
                }
                if wantsStderr {
                    (stdioFDs.2, result.stderr) = try pipe(childReads: false)
                }
            case .terminal(let initialSize):
                var name = [CChar](repeating: 0, count: 128)
                let master = execstream_open_pty(&name, name.count)
                guard master >= 0 else { throw Self.systemError("cannot open a pseudo-terminal") }
                parentEnds.append(master)
                if let size = initialSize, execstream_set_window_size(master, size.height, size.width) != 0 {
                    throw Self.systemError("cannot set the terminal size")
                }
                slavePath = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                result.stdin = master
                result.stdout = master
                result.terminal = master
            }
            try self.spawnChild(path: path, configuration: configuration, stdio: stdioFDs, slavePath: slavePath, into: &result)
        } catch {
            for fd in parentEnds {
                close(fd)
            }
            throw error
        }
        return result
    }

    /// Resizes a terminal (TIOCSWINSZ); the kernel sends the foreground process group SIGWINCH.
    public static func resize(terminal: Int32, to size: TerminalSize) throws(ProcessError) {
        guard execstream_set_window_size(terminal, size.height, size.width) == 0 else {
            throw self.systemError("cannot resize the terminal")
        }
    }

    /// Sends `signal` to the child's whole process group (it leads its own).
    public static func signalGroup(of pid: Int32, _ signal: Int32) {
        _ = execstream_kill_group(pid, signal)
    }

    private static func spawnChild(
        path: String,
        configuration: ProcessConfiguration,
        stdio: (Int32, Int32, Int32),
        slavePath: String?,
        into result: inout SpawnedProcess
    ) throws(ProcessError) {
        let argv = CStringArray(configuration.arguments)
        let envp = CStringArray(configuration.environment)
        defer {
            argv.deallocate()
            envp.deallocate()
        }
        let groups = configuration.supplementaryGroups.map { gid_t($0) }
        // Joining: the ipc, uts and mount namespaces by the child (mount last), pid by this
        // thread around clone. Opened before anything else, so a target that is gone fails here.
        var joined: [Int32] = []
        var pidNamespace: Int32 = -1
        defer {
            for fd in joined + [pidNamespace] where fd >= 0 {
                close(fd)
            }
        }
        var newNamespaces: Int32 = 0
        var hostname: String?
        switch configuration.namespaces {
        case .inherited:
            break
        case .new(let name):
            newNamespaces = execstream_container_namespace_flags()
            hostname = name
        case .joining(let target):
            for kind in ["ipc", "uts", "mnt"] {
                let fd = open("/proc/\(target)/ns/\(kind)", O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw Self.namespaceError(target, kind) }
                joined.append(fd)
            }
            pidNamespace = open("/proc/\(target)/ns/pid", O_RDONLY | O_CLOEXEC)
            guard pidNamespace >= 0 else { throw Self.namespaceError(target, "pid") }
        }
        var pid: pid_t = 0
        var pidfd: Int32 = -1
        var failedStep: UnsafePointer<CChar>?
        let status: Int32 = path.withCString { pathPointer in
            (configuration.workingDirectory ?? "").withCString { cwdPointer in
                (slavePath ?? "").withCString { slavePointer in
                    (hostname ?? "").withCString { hostnamePointer in
                        groups.withUnsafeBufferPointer { groupPointer in
                            joined.withUnsafeBufferPointer { namespacePointer in
                                var request = execstream_spawn_request(
                                    path: pathPointer,
                                    argv: argv.pointer,
                                    envp: envp.pointer,
                                    working_directory: configuration.workingDirectory == nil ? nil : cwdPointer,
                                    pty_slave_path: slavePath == nil ? nil : slavePointer,
                                    stdin_fd: stdio.0,
                                    stdout_fd: stdio.1,
                                    stderr_fd: stdio.2,
                                    uid: configuration.userID.map { Int($0) } ?? -1,
                                    gid: configuration.groupID.map { Int($0) } ?? -1,
                                    groups: groupPointer.baseAddress,
                                    group_count: groupPointer.count,
                                    namespace_fds: namespacePointer.baseAddress,
                                    namespace_count: namespacePointer.count,
                                    pid_namespace_fd: pidNamespace,
                                    new_namespaces: newNamespaces,
                                    hostname: hostname == nil ? nil : hostnamePointer
                                )
                                return execstream_spawn(&request, &pid, &pidfd, &failedStep)
                            }
                        }
                    }
                }
            }
        }
        guard status == 0 else {
            let error = errno
            let step = failedStep.map { String(cString: $0) } ?? "spawn"
            let reason = String(cString: strerror(error))
            let command = configuration.arguments[0]
            // The kernel refused the file itself (its mode, format or interpreter): the command's
            // fault, as a shell's 126 says. Any other failure is the system's.
            let refusedFile = step == "execve" && [EACCES, ENOEXEC, ENOENT, ENOTDIR, EISDIR, ETXTBSY, ELOOP, EPERM, ELIBBAD].contains(error)
            throw ProcessError(
                code: refusedFile ? .notExecutable : .spawnFailed,
                message: "exec: \"\(CommandLineLimits.displayed(command))\": \(step): \(reason)",
                errno: error
            )
        }
        result.pid = pid
        result.pidfd = pidfd
    }

    private static func namespaceError(_ pid: Int32, _ kind: String) -> ProcessError {
        let reason = String(cString: strerror(errno))
        return ProcessError(code: .spawnFailed, message: "cannot join the \(kind) namespace of process \(pid): \(reason)", errno: errno)
    }

    /// A path is used as it is; a name is looked up on the PATH of the child's environment.
    static func resolve(_ command: String, environment: [String]) throws(ProcessError) -> String {
        if command.contains("/") {
            guard access(command, X_OK) == 0 else {
                let error = errno
                let message = "exec: \"\(CommandLineLimits.displayed(command))\": \(String(cString: strerror(error)))"
                let missing = error == ENOENT || error == ENOTDIR
                throw ProcessError(code: missing ? .executableNotFound : .notExecutable, message: message, errno: error)
            }
            var status = stat()
            if stat(command, &status) == 0, status.st_mode & S_IFMT == S_IFDIR {
                throw ProcessError(code: .notExecutable, message: "exec: \"\(CommandLineLimits.displayed(command))\": is a directory", errno: EISDIR)
            }
            return command
        }
        let pathVariable = environment.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in pathVariable.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + command
            var status = stat()
            if stat(candidate, &status) == 0, status.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        throw ProcessError(code: .executableNotFound, message: "exec: \"\(CommandLineLimits.displayed(command))\": executable file not found in $PATH", errno: ENOENT)
    }

    private static func makePipe() throws(ProcessError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard execstream_pipe(&fds) == 0 else { throw self.systemError("cannot create a pipe") }
        return (fds[0], fds[1])
    }

    private static func systemError(_ what: String) -> ProcessError {
        ProcessError(code: .systemCallFailed, message: "\(what): \(String(cString: strerror(errno)))", errno: errno)
    }
}

/// A NULL-terminated array of C strings, allocated before the spawn (the child may not allocate).
private struct CStringArray {
    let pointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    private let count: Int

    init(_ strings: [String]) {
        self.count = strings.count
        self.pointer = .allocate(capacity: strings.count + 1)
        for (index, string) in strings.enumerated() {
            self.pointer[index] = strdup(string)
        }
        self.pointer[strings.count] = nil
    }

    func deallocate() {
        for index in 0..<self.count {
            free(self.pointer[index])
        }
        self.pointer.deallocate()
    }
}
