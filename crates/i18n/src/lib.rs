//! The languages of the pages people read (Russian first, then English) and the
//! catalogues of their texts: one file per language of `key = text` lines, embedded by the
//! crate that owns the pages and parsed once ([`Catalogue`]). A text may hold `{name}`
//! placeholders ([`fill`]). [`missing_keys`] keeps a crate's catalogues complete in its
//! tests.

use std::collections::HashMap;

/// The languages; Russian first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ru,
    En,
}

impl Lang {
    /// The language a cookie, form or `Accept-Language` names (`ru`, `en-GB`...);
    /// Russian otherwise.
    pub fn parse(code: Option<&str>) -> Lang {
        match code.map(|c| c.trim().to_ascii_lowercase()) {
            Some(c) if c.starts_with("en") => Lang::En,
            _ => Lang::Ru,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    /// The other language (a switch offers it).
    pub fn other(self) -> Lang {
        match self {
            Lang::Ru => Lang::En,
            Lang::En => Lang::Ru,
        }
    }
}

/// `key = text` lines (blank lines and `#` comments skipped).
pub fn parse(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// The catalogues of one crate's pages (kept in a `LazyLock` static by their owner).
pub struct Catalogue {
    /// Who owns it, for the log.
    owner: &'static str,
    texts: [HashMap<&'static str, &'static str>; 2],
}

impl Catalogue {
    /// The catalogue of the Russian and English files' contents (`include_str!`).
    pub fn new(owner: &'static str, ru: &'static str, en: &'static str) -> Catalogue {
        Catalogue { owner, texts: [parse(ru), parse(en)] }
    }

    /// The text of `key`, if the catalogue has it (for keys made from codes).
    pub fn get(&self, lang: Lang, key: &str) -> Option<&'static str> {
        self.texts[usize::from(lang == Lang::En)].get(key).copied()
    }

    /// The text of `key` (the key itself, logged, if the catalogue lacks it).
    pub fn text<'a>(&self, lang: Lang, key: &'a str) -> &'a str {
        self.get(lang, key).unwrap_or_else(|| {
            tracing::warn!(key, owner = self.owner, "a text is missing from the catalogue");
            key
        })
    }
}

/// A text with its `{name}` placeholders replaced.
pub fn fill(text: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(text.to_string(), |s, (k, v)| s.replace(&format!("{{{k}}}"), v))
}

/// What is missing from a pair of catalogues: keys one has and the other lacks, and every
/// key-like literal of `sources` (`"nav.summary"`: two lower-case words, not a file name)
/// that they lack. Also returns how many such literals were found.
pub fn missing_keys(ru: &str, en: &str, sources: &[String]) -> (Vec<String>, usize) {
    let (ru, en) = (parse(ru), parse(en));
    let mut missing: Vec<String> = ru.keys().filter(|k| !en.contains_key(*k)).map(|k| format!("en: {k}")).collect();
    missing.extend(en.keys().filter(|k| !ru.contains_key(*k)).map(|k| format!("ru: {k}")));
    let mut used = 0;
    for text in sources {
        for key in text.split('"').skip(1).step_by(2) {
            let mut parts = key.split('.');
            let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else { continue };
            let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if word(a) && word(b) && !["html", "css", "js", "txt", "rs", "svg", "png", "ico", "ttf", "pdf"].contains(&b)
            {
                used += 1;
                if !ru.contains_key(key) {
                    missing.push(format!("ru+en: {key}"));
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    (missing, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_is_the_default() {
        assert_eq!(Lang::parse(None), Lang::Ru);
        assert_eq!(Lang::parse(Some("fr")), Lang::Ru);
        assert_eq!(Lang::parse(Some("en-GB,en;q=0.9")), Lang::En);
        assert_eq!(Lang::parse(Some(" EN")), Lang::En);
    }

    #[test]
    fn catalogues_and_placeholders() {
        let c = Catalogue::new("test", "a.b = один {n}\n# comment\n\nc.d = два", "a.b = one {n}");
        assert_eq!(c.get(Lang::En, "a.b"), Some("one {n}"));
        assert_eq!(c.text(Lang::En, "c.d"), "c.d");
        assert_eq!(fill(c.text(Lang::Ru, "a.b"), &[("n", "5")]), "один 5");
        let (missing, used) = missing_keys("a.b = x\nc.d = y", "a.b = x", &["t(\"a.b\") t(\"e.f\") \"x.png\"".into()]);
        assert_eq!(missing, vec!["en: c.d", "ru+en: e.f"]);
        assert_eq!(used, 2);
    }
}
