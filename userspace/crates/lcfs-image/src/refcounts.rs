//! Reference counts as runs of blocks, for the checker and the map rebuild: memory proportional
//! to the metadata (extent records, tree and map nodes), not to the device's size.
//!
//! The checker records each reference it finds as a run of blocks referenced once more
//! ([`Refs`]: a data extent is a range, a node one block); sorting and sweeping the runs gives
//! every block's expected count as disjoint runs of equal counts ([`Counts`]), which the checker
//! compares with the map leaf by leaf and the repair writes leaf by leaf.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;

/// Blocks `start..end`, each with reference count `count` (not zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountRun {
    /// First block.
    pub start: u64,
    /// The block after the last.
    pub end: u64,
    /// Their count.
    pub count: u32,
}

/// A reference to each block of `start..end`.
#[derive(Clone, Copy, Debug)]
struct Run {
    start: u64,
    end: u64,
    /// Made by file data (extents and xattr values), which the statistics count apart.
    data: bool,
}

/// The references a check finds, in the order found.
#[derive(Debug, Default)]
pub(crate) struct Refs {
    runs: Vec<Run>,
}

impl Refs {
    /// One more reference to each block of `blocks`; `data` for file data.
    pub(crate) fn add(&mut self, blocks: Range<u64>, data: bool) {
        if blocks.is_empty() {
            return;
        }
        // References to consecutive blocks in a row (a node's children, a file's extents, the
        // map's nodes as they were allocated) make one run.
        if let Some(last) = self.runs.last_mut() {
            if last.end == blocks.start && last.data == data {
                last.end = blocks.end;
                return;
            }
        }
        self.runs.push(Run {
            start: blocks.start,
            end: blocks.end,
            data,
        });
    }

    /// Every block's count, and how many distinct blocks file data references.
    pub(crate) fn into_counts(mut self) -> (Counts, u64) {
        self.runs.sort_unstable_by_key(|r| r.start);
        let mut out = Counts::default();
        // Ends of the runs covering `pos`, soonest first: a sweep over starts and ends.
        let mut active: BinaryHeap<Reverse<(u64, bool)>> = BinaryHeap::new();
        let (mut count, mut data_count, mut data_blocks) = (0u64, 0u64, 0u64);
        let mut pos = 0u64;
        let mut next_run = self.runs.iter().peekable();
        loop {
            let start = next_run.peek().map(|r| r.start);
            let end = active.peek().map(|Reverse((e, _))| *e);
            let next = match (start, end) {
                (Some(s), Some(e)) => s.min(e),
                (Some(s), None) => s,
                (None, Some(e)) => e,
                (None, None) => break,
            };
            // `pos..next` has `count` references: runs start at or after `pos` (sorted), and
            // end after it (pushed at their start, with `end > start`).
            if next > pos && count > 0 {
                out.push(pos..next, u32::try_from(count).unwrap_or(u32::MAX));
                if data_count > 0 {
                    data_blocks = data_blocks.saturating_add(next - pos);
                }
            }
            pos = pos.max(next);
            while let Some(&Reverse((e, data))) = active.peek() {
                if e > pos {
                    break;
                }
                active.pop();
                count = count.saturating_sub(1);
                data_count = data_count.saturating_sub(u64::from(data));
            }
            while let Some(r) = next_run.next_if(|r| r.start <= pos) {
                active.push(Reverse((r.end, r.data)));
                count = count.saturating_add(1);
                data_count = data_count.saturating_add(u64::from(r.data));
            }
        }
        (out, data_blocks)
    }
}

/// Every block's reference count: disjoint runs of nonzero counts in block order; blocks
/// between them have count 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    runs: Vec<CountRun>,
}

impl Counts {
    /// The counts of `runs`, which must be in block order, disjoint, not empty and of nonzero
    /// counts; `None` if they are not.
    pub fn new(runs: Vec<CountRun>) -> Option<Self> {
        let ordered = runs.iter().all(|r| r.start < r.end && r.count != 0)
            && runs
                .windows(2)
                .all(|w| matches!(w, [a, b] if a.end <= b.start));
        ordered.then_some(Self { runs })
    }

    /// The runs of nonzero counts.
    pub fn runs(&self) -> &[CountRun] {
        &self.runs
    }

    /// Appends `count` for `blocks`, which lie after every run already there.
    fn push(&mut self, blocks: Range<u64>, count: u32) {
        match self.runs.last_mut() {
            Some(last) if last.end == blocks.start && last.count == count => {
                last.end = blocks.end;
            }
            _ => self.runs.push(CountRun {
                start: blocks.start,
                end: blocks.end,
                count,
            }),
        }
    }

    /// These counts with count 1 added at each of `blocks` (sorted, each with count 0 here);
    /// `None` if one of them has a count already.
    pub(crate) fn with_blocks(&self, blocks: &[u64]) -> Option<Self> {
        let mut out = Self::default();
        let mut runs = self.runs.iter().peekable();
        for &b in blocks {
            while let Some(r) = runs.next_if(|r| r.start <= b) {
                if r.end > b {
                    return None;
                }
                out.push(r.start..r.end, r.count);
            }
            if out.runs.last().is_some_and(|l| l.end > b) {
                return None;
            }
            out.push(b..b.checked_add(1)?, 1);
        }
        for r in runs {
            out.push(r.start..r.end, r.count);
        }
        Some(out)
    }

    /// Blocks of `blocks` whose count is not zero.
    pub(crate) fn used(&self, blocks: Range<u64>) -> u64 {
        let first = self.runs.partition_point(|r| r.end <= blocks.start);
        let mut n = 0u64;
        for r in self.runs.get(first..).unwrap_or_default() {
            if r.start >= blocks.end {
                break;
            }
            let overlap = r
                .end
                .min(blocks.end)
                .saturating_sub(r.start.max(blocks.start));
            n = n.saturating_add(overlap);
        }
        n
    }

    /// A reader of the counts in block order, from `from` on.
    pub(crate) fn cursor(&self, from: u64) -> Cursor<'_> {
        let first = self.runs.partition_point(|r| r.end <= from);
        Cursor {
            runs: self.runs.get(first..).unwrap_or_default(),
        }
    }
}

/// Reads [`Counts`] forward: each call asks about blocks at or after the previous call's.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    /// The runs not yet passed.
    runs: &'a [CountRun],
}

impl<'a> Cursor<'a> {
    /// The count of block `from` and the end of the blocks from `from` on that share it, no
    /// further than `to` (past `from`).
    pub(crate) fn piece(&mut self, from: u64, to: u64) -> (u64, u32) {
        while let Some((r, rest)) = self.runs.split_first() {
            if r.end > from {
                break;
            }
            self.runs = rest;
        }
        match self.runs.first() {
            Some(r) if r.start <= from => (r.end.min(to), r.count),
            Some(r) => (r.start.min(to), 0),
            None => (to, 0),
        }
    }

    /// The pieces of equal count that make up `blocks`, in order.
    pub(crate) fn pieces<'c>(&'c mut self, blocks: Range<u64>) -> Pieces<'c, 'a> {
        Pieces { cur: self, blocks }
    }
}

/// See [`Cursor::pieces`].
pub(crate) struct Pieces<'c, 'a> {
    cur: &'c mut Cursor<'a>,
    blocks: Range<u64>,
}

impl Iterator for Pieces<'_, '_> {
    type Item = (Range<u64>, u32);

    fn next(&mut self) -> Option<Self::Item> {
        if self.blocks.is_empty() {
            return None;
        }
        let from = self.blocks.start;
        let (end, count) = self.cur.piece(from, self.blocks.end);
        // `piece` always ends past `from`; a guard against looping forever all the same.
        let end = end.max(from.saturating_add(1)).min(self.blocks.end);
        self.blocks.start = end;
        Some((from..end, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(refs: &[(u64, u64, bool)]) -> (Vec<(u64, u64, u32)>, u64) {
        let mut r = Refs::default();
        for &(s, e, d) in refs {
            r.add(s..e, d);
        }
        let (c, data) = r.into_counts();
        let v = c.runs().iter().map(|r| (r.start, r.end, r.count)).collect();
        (v, data)
    }

    #[test]
    fn overlapping_runs_sum_per_block() {
        let (c, data) = counts(&[
            (10, 20, true),
            (15, 25, true),
            (0, 2, false),
            (20, 21, false),
        ]);
        assert_eq!(c, vec![(0, 2, 1), (10, 15, 1), (15, 21, 2), (21, 25, 1)]);
        assert_eq!(data, 15);
    }

    #[test]
    fn runs_ending_where_others_start_do_not_overlap() {
        // Off by one at a run's end would count block 5 twice or block 4 not at all.
        let (c, _) = counts(&[(5, 9, false), (0, 5, true), (9, 10, true)]);
        assert_eq!(c, vec![(0, 10, 1)]);
        let (c, data) = counts(&[(0, 5, true), (4, 5, true), (5, 6, false)]);
        assert_eq!(c, vec![(0, 4, 1), (4, 5, 2), (5, 6, 1)]);
        assert_eq!(data, 5);
    }

    #[test]
    fn cursor_pieces_cover_the_range() {
        let c = Counts::new(vec![
            CountRun {
                start: 3,
                end: 5,
                count: 2,
            },
            CountRun {
                start: 8,
                end: 9,
                count: 1,
            },
        ])
        .unwrap();
        let mut cur = c.cursor(0);
        let p: Vec<_> = cur.pieces(0..4).collect();
        assert_eq!(p, vec![(0..3, 0), (3..4, 2)]);
        let p: Vec<_> = cur.pieces(4..12).collect();
        assert_eq!(p, vec![(4..5, 2), (5..8, 0), (8..9, 1), (9..12, 0)]);
        assert_eq!(c.used(0..12), 3);
        assert_eq!(c.used(4..9), 2);
        assert_eq!(c.used(5..8), 0);
        let with = c.with_blocks(&[0, 5, 9]).unwrap();
        assert_eq!(with.used(0..12), 6);
        assert_eq!(c.with_blocks(&[4]), None);
        assert_eq!(
            Counts::new(vec![
                CountRun {
                    start: 3,
                    end: 5,
                    count: 2
                },
                CountRun {
                    start: 4,
                    end: 9,
                    count: 1
                },
            ]),
            None
        );
    }
}
