//! "Did you mean ...?": the known word closest to a misspelt one, for
//! messages (type names in filters, the `nnx-state` tool's commands and
//! options).

/// The candidate closest to `word` by edit distance (insertions, deletions,
/// substitutions and swaps of neighbours, ignoring ASCII case), when it is
/// close enough to be a likely misspelling: at most a third of the longer
/// word's length, and at least one edit under the word's own length. Ties
/// go to the first candidate.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word: Vec<char> = word.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let other: Vec<char> = candidate.chars().map(|c| c.to_ascii_lowercase()).collect();
        let longer = word.len().max(other.len());
        let limit = (longer / 3).max(1).min(word.len().saturating_sub(1));
        let d = distance(&word, &other);
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// The optimal string alignment distance of two words.
fn distance(a: &[char], b: &[char]) -> usize {
    // Three rows: the one before the previous one is for swaps.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspellings_find_their_word() {
        let types = ["Variable", "Param", "BatchStat", "Cache", "RngKey"];
        assert_eq!(closest("Parm", types), Some("Param"));
        assert_eq!(closest("param", types), Some("Param"));
        assert_eq!(closest("Parma", types), Some("Param"));
        assert_eq!(closest("Batchstats", types), Some("BatchStat"));
        assert_eq!(closest("Lora", types), None);
        assert_eq!(closest("x", types), None);
        let commands = ["inspect", "split", "merge"];
        assert_eq!(closest("inspcet", commands), Some("inspect"));
        assert_eq!(closest("merg", commands), Some("merge"));
        assert_eq!(closest("frobnicate", commands), None);
    }
}
