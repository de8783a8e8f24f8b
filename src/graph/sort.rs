//! The sort the reference's JavaScript engine runs for `Array.prototype.sort`.
//!
//! The reference's comparison is not a total order (mixed source types compare by the written
//! reference, same types by other fields), so the result depends on which pairs the sort
//! compares. V8's TimSort handles fewer than 64 elements as one run: it takes the longest
//! ascending or strictly descending prefix (reversing a descending one), then binary-inserts
//! the rest. This does the same, with the same argument order in every comparison. Rounds of
//! 64 or more Features would be merged from several runs in V8; here they are inserted the same
//! way, which gives V8's result whenever the comparison is consistent.

use std::cmp::Ordering;

/// Sorts `items` stably with `compare`, calling it exactly as V8 does for short arrays.
pub fn v8_sort<T: Copy>(items: &mut [T], mut compare: impl FnMut(T, T) -> Ordering) {
    let len = items.len();
    if len < 2 {
        return;
    }

    let descending = compare(items[1], items[0]) == Ordering::Less;
    let mut run = 2;
    while run < len {
        let order = compare(items[run], items[run - 1]);
        let continues = if descending {
            order == Ordering::Less
        } else {
            order != Ordering::Less
        };
        if !continues {
            break;
        }
        run += 1;
    }
    if descending {
        items[..run].reverse();
    }

    for start in run..len {
        let pivot = items[start];
        let (mut left, mut right) = (0, start);
        while left < right {
            let mid = left + (right - left) / 2;
            if compare(pivot, items[mid]) == Ordering::Less {
                right = mid;
            } else {
                left = mid + 1;
            }
        }
        items.copy_within(left..start, left + 1);
        items[left] = pivot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_and_keeps_ties_in_order() {
        let mut items = [(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd'), (1, 'e'), (0, 'f')];
        v8_sort(&mut items, |a, b| a.0.cmp(&b.0));
        assert_eq!(
            items,
            [(0, 'f'), (1, 'b'), (1, 'e'), (2, 'd'), (3, 'a'), (3, 'c')]
        );
    }

    #[test]
    fn descending_runs_are_reversed_only_when_strict() {
        let mut items = [(5, 'a'), (4, 'b'), (4, 'c'), (1, 'd')];
        v8_sort(&mut items, |a, b| a.0.cmp(&b.0));
        assert_eq!(items, [(1, 'd'), (4, 'b'), (4, 'c'), (5, 'a')]);
    }

    #[test]
    fn an_inconsistent_comparison_gives_the_engines_answer() {
        // Rock-paper-scissors: 0 < 1, 1 < 2, 2 < 0. Node 20 prints these orders.
        let beats = |a: u8, b: u8| match (a, b) {
            _ if a == b => Ordering::Equal,
            (0, 1) | (1, 2) | (2, 0) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let cases: &[(&[u8], &[u8])] = &[
            (&[0, 1, 2], &[0, 1, 2]),
            (&[2, 1, 0], &[0, 1, 2]),
            (&[1, 0, 2], &[2, 0, 1]),
            (&[2, 0, 1, 0, 2, 1], &[2, 2, 0, 0, 1, 1]),
        ];
        for (input, node) in cases {
            let mut items = input.to_vec();
            v8_sort(&mut items, beats);
            assert_eq!(&items, node, "{input:?}");
        }
    }
}
