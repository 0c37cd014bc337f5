import Synchronization

/// Counts, process-wide, the objects every session is made of while they are alive: exec and
/// attach sessions, and the protocol adapters that serve them (one per stream or upgraded
/// connection). When a client is gone and its session has ended, both are back to zero; an
/// object kept alive by a reference cycle shows here as a count that never returns.
///
/// `GET /debug/settled` (benchmark routes only) answers once both counts are zero (and the
/// registry holds no more channels than the caller's baseline): leak tests wait for that event
/// instead of for time.
package final class LiveObjects: Sendable {
    /// What is counted.
    package enum Kind: String, CaseIterable, Sendable {
        /// `ExecSession`s.
        case sessions
        /// Protocol adapters: native, WebSocket (both carriers), SPDY, port-forward.
        case adapters
    }

    /// Held by a counted object: counts it while the object lives.
    final class Token: Sendable {
        private let kind: Kind

        init(_ kind: Kind) {
            self.kind = kind
            LiveObjects.shared.add(kind, 1)
        }

        deinit {
            LiveObjects.shared.add(self.kind, -1)
        }
    }

    /// The counts of this process.
    package static let shared = LiveObjects()

    private let counts = Mutex([Kind: Int]())

    /// The counts now.
    package var current: [Kind: Int] {
        self.counts.withLock { $0 }
    }

    /// Whether nothing counted is alive.
    package var isSettled: Bool {
        self.counts.withLock { !$0.values.contains { $0 != 0 } }
    }

    private func add(_ kind: Kind, _ delta: Int) {
        self.counts.withLock { $0[kind, default: 0] += delta }
    }
}
