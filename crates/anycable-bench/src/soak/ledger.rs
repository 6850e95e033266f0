//! Loss accounting for one subscription of a soak client.
//!
//! Each stream's publications are numbered 1, 2, ... by the one publisher, which notes for
//! every stream the last number it started to send (`sent`) and the last one the server
//! acknowledged (`acked`). A subscription expects:
//!
//! - every publication sent after its confirmation arrived (numbers above `sent` at that
//!   moment: the server had the subscription before it received them);
//! - before it ends, every publication acknowledged by then (up to `acked`), each once, in
//!   order.
//!
//! What is missing from that range is lost; what comes twice (or after a later one) is a
//! duplicate.

/// What one subscription received of its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    /// Publications up to this one may have been handled before the subscription existed.
    from: u64,
    /// The last number received above `from`.
    last: Option<u64>,
    pub deliveries: u64,
    pub losses: u64,
    pub duplicates: u64,
}

impl Ledger {
    /// A subscription confirmed when the publisher had started sending publication `sent`.
    pub fn confirmed(sent: u64) -> Ledger {
        Ledger {
            from: sent,
            last: None,
            deliveries: 0,
            losses: 0,
            duplicates: 0,
        }
    }

    /// Publication `seq` arrived; returns what it changed.
    pub fn receive(&mut self, seq: u64) -> Change {
        if seq <= self.from {
            // Handled around the subscription: it may come or not.
            return Change::default();
        }
        let expected = self.last.map_or(self.from + 1, |last| last + 1);
        if seq < expected {
            self.duplicates += 1;
            return Change {
                duplicates: 1,
                ..Change::default()
            };
        }
        let lost = seq - expected;
        self.losses += lost;
        self.deliveries += 1;
        self.last = Some(seq);
        Change {
            deliveries: 1,
            losses: lost,
            duplicates: 0,
        }
    }

    /// Whether everything up to `acked` arrived (or was counted lost).
    pub fn caught_up(&self, acked: u64) -> bool {
        self.last.unwrap_or(self.from) >= acked
    }

    /// The subscription ends: whatever up to `acked` did not arrive is lost (returned).
    pub fn close(&mut self, acked: u64) -> u64 {
        let reached = self.last.unwrap_or(self.from);
        if acked <= reached {
            return 0;
        }
        self.losses += acked - reached;
        self.last = Some(acked);
        acked - reached
    }
}

/// What one received publication changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub deliveries: u64,
    pub losses: u64,
    pub duplicates: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_after_the_confirmation_in_order_is_no_loss() {
        let mut ledger = Ledger::confirmed(10);
        // 9 and 10 may come or not.
        for seq in [9, 10, 11, 12, 13] {
            ledger.receive(seq);
        }
        assert!(ledger.caught_up(13));
        assert_eq!(ledger.close(13), 0);
        assert_eq!(
            (ledger.deliveries, ledger.losses, ledger.duplicates),
            (3, 0, 0)
        );
    }

    #[test]
    fn gaps_at_the_start_in_the_middle_and_at_the_end_are_losses() {
        let mut ledger = Ledger::confirmed(10);
        assert_eq!(ledger.receive(12).losses, 1); // 11
        assert_eq!(ledger.receive(15).losses, 2); // 13, 14
        ledger.receive(15); // duplicate
        ledger.receive(14); // late: counted as a duplicate, already lost
        assert!(!ledger.caught_up(18));
        assert_eq!(ledger.close(18), 3); // 16, 17, 18
        assert_eq!(
            (ledger.deliveries, ledger.losses, ledger.duplicates),
            (2, 6, 2)
        );
    }

    #[test]
    fn nothing_expected_when_nothing_was_published_after_the_confirmation() {
        let mut ledger = Ledger::confirmed(7);
        assert!(ledger.caught_up(7));
        ledger.close(7);
        assert_eq!(ledger.losses, 0);
    }
}
