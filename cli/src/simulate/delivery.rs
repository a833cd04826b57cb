//! Merging the pipelines' events into one stream, and delivering it as EventBridge would.

use super::*;

// ---------------------------------------------------------------------------------------------------------------
// Merging the pipelines by time.

/// The pipelines' streams merged by event time (ties: the lower pipeline index first). The heap holds one entry per
/// pipeline that has events left; a pipeline whose current execution is used up is keyed by its next start, and the
/// execution is generated only when that start is reached.
pub(super) struct Merged {
    pub(super) pipelines: Vec<PipelineGen>,
    pub(super) heap: BinaryHeap<Reverse<(DateTime<Utc>, usize)>>,
}

impl Merged {
    pub(super) fn new(opts: &SimOptions) -> Merged {
        let pipelines: Vec<PipelineGen> = (0..opts.pipelines).map(|i| PipelineGen::new(opts, i)).collect();
        let heap = pipelines
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.peek_time().map(|t| Reverse((t, i))))
            .collect();
        Merged { pipelines, heap }
    }

    pub(super) fn next(&mut self) -> Option<(DateTime<Utc>, Value)> {
        let Reverse((_, i)) = self.heap.pop()?;
        let event = self.pipelines[i].pop();
        if let Some(t) = self.pipelines[i].peek_time() {
            self.heap.push(Reverse((t, i)));
        }
        event
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Delivery: reordering within the window, and duplicates.

/// Delivers the merged stream out of order and with copies. The buffer holds the next `window + 1` events of the
/// clean stream; each step delivers one of them at random, except that an event that has waited `window` steps is
/// delivered then. So an event is never delivered more than `window` positions (counted among first deliveries) from
/// its place in time order. A delivered event gets a copy with probability `duplicate_rate`, delivered 0 to `window`
/// steps later.
pub(super) struct Delivery {
    pub(super) rng: Rng,
    pub(super) window: usize,
    pub(super) duplicate_rate: f64,
    pub(super) buffer: VecDeque<(u64, Value)>,
    pub(super) read: u64,
    pub(super) exhausted: bool,
    pub(super) originals_out: u64,
    pub(super) out: u64,
    /// Copies waiting: (due step, sequence, event).
    pub(super) copies: Vec<(u64, u64, Value)>,
    pub(super) copy_seq: u64,
}

impl Delivery {
    pub(super) fn new(opts: &SimOptions) -> Delivery {
        Delivery {
            rng: Rng::new(derive_seed(opts.seed, 0x6465_6c69_7665_7279, 0)),
            window: opts.reorder_window,
            duplicate_rate: opts.duplicate_rate,
            buffer: VecDeque::with_capacity(opts.reorder_window.saturating_add(1).min(1 << 16)),
            read: 0,
            exhausted: false,
            originals_out: 0,
            out: 0,
            copies: Vec::new(),
            copy_seq: 0,
        }
    }

    pub(super) fn next(&mut self, source: &mut Merged) -> Option<Value> {
        while !self.exhausted && self.buffer.len() <= self.window {
            match source.next() {
                Some((_, e)) => {
                    self.buffer.push_back((self.read, e));
                    self.read += 1;
                }
                None => self.exhausted = true,
            }
        }
        let due_copy = self
            .copies
            .iter()
            .enumerate()
            .min_by_key(|(_, (due, seq, _))| (*due, *seq))
            .map(|(i, (due, _, _))| (i, *due));
        if let Some((i, due)) = due_copy {
            if due <= self.out || self.buffer.is_empty() {
                self.out += 1;
                return Some(self.copies.swap_remove(i).2);
            }
        }
        let (oldest, _) = self.buffer.front()?;
        let index = if oldest.saturating_add(self.window as u64) <= self.originals_out {
            0
        } else {
            below(&mut self.rng, self.buffer.len())
        };
        let (_, event) = self.buffer.remove(index)?;
        self.originals_out += 1;
        self.out += 1;
        if chance(&mut self.rng, self.duplicate_rate) {
            let mut copy = event.clone();
            // A redelivery keeps the envelope id; the same event reaching the bus by another route gets a new one.
            if chance(&mut self.rng, 0.5) {
                copy["id"] = json!(uuid(&mut self.rng));
            }
            let due = self.out + below(&mut self.rng, self.window.saturating_add(1)) as u64;
            self.copies.push((due, self.copy_seq, copy));
            self.copy_seq += 1;
        }
        Some(event)
    }
}
