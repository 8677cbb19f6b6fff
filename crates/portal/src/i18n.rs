//! The catalogues of the portal's words, one per language (`locales/ru.txt`,
//! `locales/en.txt`: `key = text` lines), embedded in the binary and read once. Templates
//! ask for a key (`t.s("nav.summary")`); a key missing from a catalogue shows as itself
//! (and a test keeps the catalogues complete).

use std::collections::HashMap;
use std::sync::LazyLock;

/// The languages of the portal; Russian first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ru,
    En,
}

impl Lang {
    /// The language a cookie or form names (`ru`, `en`); Russian otherwise.
    pub fn parse(code: Option<&str>) -> Lang {
        match code.map(str::trim) {
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

    /// The other language (the switch offers it).
    pub fn other(self) -> Lang {
        match self {
            Lang::Ru => Lang::En,
            Lang::En => Lang::Ru,
        }
    }
}

pub(crate) const RU: &str = include_str!("../locales/ru.txt");
pub(crate) const EN: &str = include_str!("../locales/en.txt");

pub(crate) fn parse(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

static CATALOGUES: LazyLock<[HashMap<&'static str, &'static str>; 2]> = LazyLock::new(|| [parse(RU), parse(EN)]);

/// The words of one language, for a template.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    pub lang: Lang,
}

impl Tr {
    pub fn new(lang: Lang) -> Tr {
        Tr { lang }
    }

    /// The text of `key` (the key itself, logged, if a catalogue lacks it).
    pub fn s<'a>(&self, key: &'a str) -> &'a str {
        self.opt(key).unwrap_or_else(|| {
            tracing::warn!(key, "a portal text is missing from the catalogue");
            key
        })
    }

    /// The text of `key`, if the catalogue has it (for keys made from codes).
    pub fn opt(&self, key: &str) -> Option<&'static str> {
        CATALOGUES[usize::from(self.lang == Lang::En)].get(key).copied()
    }

    /// The language's code (`lang` attribute).
    pub fn code(&self) -> &'static str {
        self.lang.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogues_have_the_same_keys_and_every_key_the_templates_use() {
        let (ru, en) = (parse(RU), parse(EN));
        let mut missing: Vec<String> = ru.keys().filter(|k| !en.contains_key(*k)).map(|k| format!("en: {k}")).collect();
        missing.extend(en.keys().filter(|k| !ru.contains_key(*k)).map(|k| format!("ru: {k}")));
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        let mut sources: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
        for f in ["lib.rs", "pages.rs", "signin.rs", "view.rs"] {
            sources.push(
                std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/").to_string() + f)
                    .unwrap_or_default(),
            );
        }
        // every literal that looks like a key (`"nav.summary"`) is one
        let mut used = 0;
        for text in &sources {
            for key in text.split('"').skip(1).step_by(2) {
                let mut parts = key.split('.');
                let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else { continue };
                let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                if word(a)
                    && word(b)
                    && !["html", "css", "js", "txt", "rs", "svg", "png", "ico", "ttf", "pdf"].contains(&b)
                {
                    used += 1;
                    if !ru.contains_key(key) {
                        missing.push(format!("ru+en: {key}"));
                    }
                }
            }
        }
        assert!(used > 20, "the scan found the keys the templates use ({used})");
        missing.sort();
        missing.dedup();
        assert!(missing.is_empty(), "keys missing from a catalogue: {missing:?}");
    }

    #[test]
    fn russian_is_the_default() {
        assert_eq!(Lang::parse(None), Lang::Ru);
        assert_eq!(Lang::parse(Some("fr")), Lang::Ru);
        assert_eq!(Lang::parse(Some("en")), Lang::En);
        assert_ne!(Tr::new(Lang::Ru).s("nav.summary"), Tr::new(Lang::En).s("nav.summary"));
    }
}
