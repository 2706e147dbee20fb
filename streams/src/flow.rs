//! Flow control as Zilla does it since 2021: absolute positions instead of incremental credit.
//!
//! Per direction of a stream the sender tracks `sequence` (bytes reserved so far) and the
//! receiver's last `acknowledge` and `maximum`; it may send while
//! `sequence - acknowledge + reserved <= maximum`, where `reserved = length + padding`. The
//! receiver answers with `WINDOW(acknowledge, maximum, padding)`. Positions are absolute, so a
//! repeated or reordered WINDOW is harmless and an observer can reconstruct the state.

/// The sender's side of one stream direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendWindow {
    pub sequence: u64,
    pub acknowledge: u64,
    pub maximum: u32,
    pub padding: u32,
}

impl SendWindow {
    /// Applies a WINDOW frame. Stale acknowledgements (lower than known) are ignored.
    pub fn on_window(&mut self, acknowledge: u64, maximum: u32, padding: u32) {
        if acknowledge >= self.acknowledge {
            self.acknowledge = acknowledge.min(self.sequence);
            self.maximum = maximum;
            self.padding = padding;
        }
    }

    /// Bytes of credit left (before padding).
    pub fn available(&self) -> usize {
        (self.acknowledge + self.maximum as u64).saturating_sub(self.sequence) as usize
    }

    /// The largest payload that fits now, capped at `want`, taking padding into account.
    pub fn writable(&self, want: usize) -> usize {
        self.available()
            .saturating_sub(self.padding as usize)
            .min(want)
    }

    /// Records that a DATA frame of `length` payload bytes was sent; returns its `reserved`.
    pub fn consume(&mut self, length: usize) -> u32 {
        let reserved = length as u64 + self.padding as u64;
        self.sequence += reserved;
        reserved as u32
    }

    /// True once the receiver has acknowledged everything sent.
    pub fn drained(&self) -> bool {
        self.acknowledge >= self.sequence
    }
}

/// A DATA frame broke the window the receiver granted: the stream must be reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("flow control violated: sequence {sequence} + reserved {reserved} exceeds acknowledge {acknowledge} + maximum {maximum}")]
pub struct FlowViolation {
    pub sequence: u64,
    pub reserved: u32,
    pub acknowledge: u64,
    pub maximum: u32,
}

/// The receiver's side of one stream direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvWindow {
    pub sequence: u64,
    pub acknowledge: u64,
    pub maximum: u32,
    /// What the sender was last told, to decide when a new WINDOW is worth sending.
    announced_acknowledge: u64,
    announced_maximum: u32,
}

impl RecvWindow {
    pub fn new(maximum: u32) -> RecvWindow {
        RecvWindow {
            maximum,
            ..RecvWindow::default()
        }
    }

    /// Accounts for a received DATA frame that reserved `reserved` bytes.
    pub fn on_data(&mut self, reserved: u32) -> Result<(), FlowViolation> {
        if self.sequence + reserved as u64 > self.acknowledge + self.maximum as u64 {
            return Err(FlowViolation {
                sequence: self.sequence,
                reserved,
                acknowledge: self.acknowledge,
                maximum: self.maximum,
            });
        }
        self.sequence += reserved as u64;
        Ok(())
    }

    /// Releases `bytes` of received data (consumed, forwarded, or written out).
    pub fn release(&mut self, bytes: u64) {
        self.acknowledge = (self.acknowledge + bytes).min(self.sequence);
    }

    /// Releases everything received so far.
    pub fn release_all(&mut self) {
        self.acknowledge = self.sequence;
    }

    /// Whether a WINDOW should be sent: on first grant, on a change of maximum, or once at
    /// least half the window has been released since the last announcement (batching WINDOWs
    /// without ever letting the sender stall on a full window).
    pub fn window_due(&self) -> bool {
        self.announced_maximum != self.maximum
            || (self.acknowledge - self.announced_acknowledge) * 2 >= self.maximum as u64
                && self.acknowledge > self.announced_acknowledge
    }

    /// Marks the current state as announced; returns `(acknowledge, maximum)` to put in WINDOW.
    pub fn announce(&mut self) -> (u64, u32) {
        self.announced_acknowledge = self.acknowledge;
        self.announced_maximum = self.maximum;
        (self.acknowledge, self.maximum)
    }
}
