/// How much of stdout and stderr an ExecSync response may carry so that the whole response fits
/// in one gRPC message of the configured size: the kubelet, crictl and grpc-go refuse a larger
/// one outright, which would turn a large output into an error instead of a truncated answer.
///
/// Each stream is first captured up to its own limit (`BoundedOutputCapture`). If both fit the
/// budget together they are sent whole; otherwise the smaller keeps all it has up to half of the
/// budget and the larger gets the rest, each ending with its truncation notice.
public enum ExecSyncOutputBudget {
    /// The bytes of an `ExecSyncResponse` besides its two outputs, rounded up: two length-delimited
    /// fields' tags and lengths (1 + 5 bytes each) and `exit_code` (1 + up to 10 bytes).
    public static let responseOverheadBytes = 32

    /// The most bytes stdout and stderr may carry together in a message of `maxMessageBytes`.
    public static func outputBytes(maxMessageBytes: Int) -> Int {
        max(0, maxMessageBytes - Self.responseOverheadBytes)
    }

    /// The limits for stdout and stderr, given the sizes the captures would return on their own.
    public static func limits(stdout: Int, stderr: Int, maxMessageBytes: Int) -> (stdout: Int, stderr: Int) {
        let budget = Self.outputBytes(maxMessageBytes: maxMessageBytes)
        guard stdout + stderr > budget else { return (stdout, stderr) }
        let half = budget / 2
        if stdout <= half {
            return (stdout, budget - stdout)
        }
        if stderr <= half {
            return (budget - stderr, stderr)
        }
        return (budget - half, half)
    }
}
