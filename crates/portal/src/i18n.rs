//! The catalogues of the portal's words, one per language (`locales/ru.txt`,
//! `locales/en.txt`: `key = text` lines), embedded in the binary and read once. Templates
//! ask for a key (`t.s("nav.summary")`); a key missing from a catalogue shows as itself
//! (and a test keeps the catalogues complete).

use std::sync::LazyLock;

pub use i18n::Lang;

pub(crate) const RU: &str = include_str!("../locales/ru.txt");
pub(crate) const EN: &str = include_str!("../locales/en.txt");

static CATALOGUE: LazyLock<i18n::Catalogue> = LazyLock::new(|| i18n::Catalogue::new("portal", RU, EN));

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
        CATALOGUE.text(self.lang, key)
    }

    /// The text of `key`, if the catalogue has it (for keys made from codes).
    pub fn opt(&self, key: &str) -> Option<&'static str> {
        CATALOGUE.get(self.lang, key)
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
        let mut sources = Vec::new();
        for dir in ["templates", "src"] {
            for e in std::fs::read_dir(format!("{}/{dir}", env!("CARGO_MANIFEST_DIR"))).unwrap() {
                sources.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
            }
        }
        let (missing, used) = i18n::missing_keys(RU, EN, &sources);
        assert!(used > 100, "the scan found the keys the pages use ({used})");
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
