//! Words for the index: Chinese (and Japanese, Korean) text as overlapping character
//! bigrams plus single characters, everything else as runs of letters and digits.
//!
//! Chinese has no spaces between words and most words are two characters (挂号, 医保,
//! 洗牙), so a bigram index finds a word wherever it stands without a dictionary — the
//! scheme of Lucene's CJK analyzer. Single characters are indexed too so a one-character
//! query (牙) still finds something. Queries are cut with [`Mode::Query`]: bigrams only
//! when a run has two characters or more, so 预约挂号 asks for 预约, 约挂 and 挂号 and a
//! text holding most of them ranks first.
//!
//! The analyzers built on it ([`analyzer`]) lowercase and stem English words too.

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// How a text is cut: for the index, or for a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every single character and every bigram of a CJK run.
    Index,
    /// A CJK run's bigrams (its one character when it has only one).
    Query,
}

/// The tokenizer; see the module documentation.
#[derive(Debug, Clone)]
pub struct CjkTokenizer {
    mode: Mode,
    tokens: Vec<Token>,
}

impl CjkTokenizer {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            tokens: Vec::new(),
        }
    }
}

/// The analyzer for `mode`: [`CjkTokenizer`], then words longer than 40 bytes dropped,
/// lowercased and stemmed as English (a no-op on Chinese).
pub fn analyzer(mode: Mode) -> TextAnalyzer {
    TextAnalyzer::builder(CjkTokenizer::new(mode))
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Whether `c` is written without spaces between words (Han, kana, Hangul).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x2FFFF) // CJK extensions B..
}

/// The stream over the tokens [`CjkTokenizer`] cut.
pub struct CjkTokenStream<'a> {
    /// The tokens, then one blank placeholder when there are none, so `token()` always
    /// has something to lend (`advance` never reaches it).
    tokens: &'a mut Vec<Token>,
    /// How many real tokens there are.
    len: usize,
    /// One past the current token; 0 before the first `advance`.
    next: usize,
}

impl Tokenizer for CjkTokenizer {
    type TokenStream<'a> = CjkTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CjkTokenStream<'a> {
        self.tokens.clear();
        cut(text, self.mode, &mut self.tokens);
        let len = self.tokens.len();
        if len == 0 {
            self.tokens.push(Token::default());
        }
        CjkTokenStream {
            tokens: &mut self.tokens,
            len,
            next: 0,
        }
    }
}

impl TokenStream for CjkTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.next < self.len {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        // Tantivy asks only after `advance` said yes; before that the first token (or
        // the placeholder) stands in. `tokens` is never empty.
        &self.tokens[self.next.saturating_sub(1)]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next.saturating_sub(1)]
    }
}

/// Appends the tokens of `text` to `out`.
fn cut(text: &str, mode: Mode, out: &mut Vec<Token>) {
    let mut position = 0usize;
    let mut word: Option<usize> = None; // start of the current letter/digit run
    let mut run: Vec<(usize, char)> = Vec::new(); // the current CJK run
    for (at, c) in text.char_indices() {
        if is_cjk(c) {
            if let Some(from) = word.take() {
                push(out, text, (from, at), &mut position);
            }
            run.push((at, c));
        } else {
            flush_run(text, &run, mode, out, &mut position);
            run.clear();
            if c.is_alphanumeric() {
                word.get_or_insert(at);
            } else if let Some(from) = word.take() {
                push(out, text, (from, at), &mut position);
            }
        }
    }
    if let Some(from) = word {
        push(out, text, (from, text.len()), &mut position);
    }
    flush_run(text, &run, mode, out, &mut position);
}

fn flush_run(text: &str, run: &[(usize, char)], mode: Mode, out: &mut Vec<Token>, pos: &mut usize) {
    // Characters `i..=j` of the run, as a byte range of `text`.
    let chars = |i: usize, j: usize| (run[i].0, run[j].0 + run[j].1.len_utf8());
    match (mode, run.len()) {
        (_, 0) => {}
        (Mode::Query, 1) => push(out, text, chars(0, 0), pos),
        (Mode::Query, n) => (0..n - 1).for_each(|i| push(out, text, chars(i, i + 1), pos)),
        (Mode::Index, n) => {
            for i in 0..n {
                let at = *pos;
                push(out, text, chars(i, i), pos);
                if i + 1 < n {
                    *pos = at; // the bigram starting here shares the character's position
                    push(out, text, chars(i, i + 1), pos);
                }
            }
        }
    }
}

fn push(out: &mut Vec<Token>, text: &str, (from, to): (usize, usize), position: &mut usize) {
    out.push(Token {
        offset_from: from,
        offset_to: to,
        position: *position,
        text: text[from..to].to_owned(),
        position_length: 1,
    });
    *position += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(mode: Mode, text: &str) -> Vec<String> {
        let mut analyzer = analyzer(mode);
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    #[test]
    fn chinese_is_cut_into_characters_and_bigrams_for_the_index() {
        assert_eq!(
            texts(Mode::Index, "预约挂号"),
            ["预", "预约", "约", "约挂", "挂", "挂号", "号"]
        );
    }

    #[test]
    fn a_query_asks_for_bigrams_and_a_lone_character_for_itself() {
        assert_eq!(texts(Mode::Query, "预约挂号"), ["预约", "约挂", "挂号"]);
        assert_eq!(texts(Mode::Query, "牙"), ["牙"]);
    }

    #[test]
    fn english_is_split_lowercased_and_stemmed_beside_chinese() {
        assert_eq!(
            texts(Mode::Query, "Rescheduling appointments? 改约 ok"),
            ["reschedul", "appoint", "改约", "ok"]
        );
        assert_eq!(
            texts(Mode::Index, "CT复查3次"),
            ["ct", "复", "复查", "查", "3", "次"]
        );
    }

    #[test]
    fn text_with_no_words_gives_no_tokens() {
        assert!(texts(Mode::Index, "").is_empty());
        assert!(texts(Mode::Query, " ，。!? ").is_empty());
    }
}
