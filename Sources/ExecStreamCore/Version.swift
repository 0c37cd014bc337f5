/// What ExecStream reports about itself: `execstream version`, and later CRI `Version`.
public enum ExecStreamVersion {
    /// The runtime's name, as CRI `VersionResponse.runtime_name` reports it.
    public static let runtimeName = "execstream"
    /// This build's version, as CRI `VersionResponse.runtime_version` reports it.
    public static let runtimeVersion = "0.1.0"
    /// The CRI API version served, as CRI `VersionResponse.runtime_api_version` reports it.
    public static let criAPIVersion = "v1"
}
