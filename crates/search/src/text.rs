//! Full-text terms for `_text`, `_content` and the token `:text` modifier: text split
//! into words, each reduced to its stem (Snowball Russian for Cyrillic words, English for
//! Latin ones) and folded like strings, so that `кашель`, `кашля` and `Кашлем` — or
//! `cough`, `coughing` — are the same term. Index and query go through the same function.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};

use crate::normalize::fold;

static RUSSIAN: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::Russian));
static ENGLISH: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// Longest word indexed (longer ones are identifiers or noise, cut to this many chars).
const MAX_WORD: usize = 40;

/// The distinct terms of `text`, in order of first appearance.
pub fn terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut found: HashSet<String> = HashSet::new();
    let words = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty());
    STEMS.with_borrow_mut(|cache| {
        if cache.len() > STEM_CACHE {
            cache.clear();
        }
        for word in words {
            if !seen.insert(word) {
                continue;
            }
            let term = cache.entry(word.to_string()).or_insert_with(|| term(word));
            if !term.is_empty() && found.insert(term.clone()) {
                out.push(term.clone());
            }
        }
    });
    out
}

thread_local! {
    /// Words already reduced to their term, per thread: the same words recur from resource
    /// to resource (displays of codes, units, names), and stemming is most of the text work.
    static STEMS: std::cell::RefCell<HashMap<String, String>> = std::cell::RefCell::new(HashMap::new());
}

/// Most words a thread's [`STEMS`] cache holds before it starts again.
const STEM_CACHE: usize = 100_000;

/// The term of one word.
fn term(word: &str) -> String {
    let lower: String = word.chars().take(MAX_WORD).flat_map(char::to_lowercase).collect();
    let lower = lower.replace('ё', "е");
    let cyrillic = lower.chars().any(|c| ('\u{0400}'..='\u{04FF}').contains(&c));
    let stem = if cyrillic {
        drop_fleeting_vowel(&RUSSIAN.stem(&lower)).into()
    } else if lower.chars().all(|c| c.is_ascii_alphabetic()) {
        ENGLISH.stem(&lower)
    } else {
        lower.as_str().into()
    };
    fold(&stem)
}

/// Russian nouns lose the vowel of their last syllable in most forms (`кашель`/`кашля`,
/// `отец`/`отца`, `день`/`дня`), which Snowball keeps: drop an `е`/`о` between two final
/// consonants of a stem, so that every form gives the same term.
fn drop_fleeting_vowel(stem: &str) -> String {
    let chars: Vec<char> = stem.chars().collect();
    let consonant = |c: char| ('а'..='я').contains(&c) && !"аеиоуыэюяйьъ".contains(c);
    match chars.as_slice() {
        [.., a, v, b] if chars.len() >= 4 && consonant(*a) && matches!(v, 'е' | 'о') && consonant(*b) => {
            let mut out: String = chars[..chars.len() - 2].iter().collect();
            out.push(*b);
            out
        }
        _ => stem.to_string(),
    }
}

/// The visible text of an XHTML narrative: tags removed, character entities decoded
/// where common, whitespace kept as word boundaries.
pub fn narrative_text(xhtml: &str) -> String {
    let mut out = String::with_capacity(xhtml.len());
    let mut in_tag = false;
    for c in xhtml.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&nbsp;", " ").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_forms_share_a_term() {
        assert_eq!(terms("кашель"), terms("кашля"));
        assert_eq!(terms("Кашлем"), terms("кашель"));
        assert_eq!(terms("Ёлка"), terms("елки"));
        assert_eq!(terms("отец"), terms("отцом"));
        assert_eq!(terms("давление"), terms("давлении"));
        assert_eq!(terms("coughing"), terms("cough"));
        assert_eq!(terms("Hypertension, essential"), vec!["hypertens".to_string(), "essenti".to_string()]);
        assert_ne!(terms("давление"), terms("диабет"));
        assert_eq!(terms("I10 I10 i10"), vec!["i10".to_string()]);
    }

    #[test]
    fn narrative_is_stripped_of_markup() {
        let t = narrative_text("<div xmlns=\"http://www.w3.org/1999/xhtml\"><b>Жалобы</b>: сухой&nbsp;кашель</div>");
        assert_eq!(terms(&t), [terms("жалобы"), terms("сухой"), terms("кашель")].concat());
    }
}
