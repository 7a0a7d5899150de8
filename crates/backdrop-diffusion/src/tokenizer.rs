//! The CLIP tokenizer, built with the `tokenizers` crate from a model's `vocab.json` and
//! `merges.txt`, producing the ids transformers' `CLIPTokenizer` produces.
//!
//! This module owns the text clean-up the reference tokenizer does before BPE (control
//! characters dropped, spaces around CJK ideographs, NFC, whitespace collapsed, lower
//! case), the CLIP split pattern, byte-level BPE with the `</w>` word suffix, and the
//! fixed-length framing the text encoder expects: start token, at most 75 tokens, end
//! token, padding to 77 with the model's pad token (the end token for SD 1.x, `!` for
//! SD 2.x, read from `tokenizer_config.json` / `special_tokens_map.json`).

use crate::DiffusionError;
use serde_json::Value;
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// CLIP's pre-tokenization pattern (the special tokens are never in user text).
const CLIP_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// A CLIP tokenizer with its framing.
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_length: usize,
    /// Special tokens as they may appear in text (longest first): the reference splits
    /// the text at them before anything else, so SD 2.x's pad token `!` is always its own
    /// token.
    specials: Vec<(String, u32)>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("max_length", &self.max_length)
            .finish()
    }
}

fn token_name(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn read_json(path: &Path) -> Option<Value> {
    std::fs::read_to_string(path).ok().and_then(|s| serde_json::from_str(&s).ok())
}

impl ClipTokenizer {
    /// Loads the tokenizer folder of a model (`vocab.json`, `merges.txt`, and the
    /// optional `tokenizer_config.json` / `special_tokens_map.json`).
    pub fn from_dir(dir: &Path) -> Result<Self, DiffusionError> {
        let vocab = dir.join("vocab.json");
        let merges = dir.join("merges.txt");
        let fail =
            |what: String| DiffusionError::Model(format!("tokenizer in {}: {what}", dir.display()));
        let bpe = BPE::from_file(
            vocab.to_str().ok_or_else(|| fail("path is not UTF-8".into()))?,
            merges.to_str().ok_or_else(|| fail("path is not UTF-8".into()))?,
        )
        .unk_token("<|endoftext|>".into())
        .end_of_word_suffix("</w>".into())
        .build()
        .map_err(|e| fail(format!("cannot read vocab.json/merges.txt: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_normalizer(Some(NormalizerSequence::new(vec![
            NormalizerWrapper::NFC(NFC),
            NormalizerWrapper::Lowercase(Lowercase),
        ])));
        let split = Split::new(
            SplitPattern::Regex(CLIP_PATTERN.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(|e| fail(format!("split pattern: {e}")))?;
        tokenizer.with_pre_tokenizer(Some(PreSequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
        ])));

        let config = read_json(&dir.join("tokenizer_config.json"));
        let special = read_json(&dir.join("special_tokens_map.json"));
        let mut specials: Vec<(String, u32)> = Vec::new();
        let mut lookup = |key: &str, default: &str| -> Result<u32, DiffusionError> {
            let name = token_name(config.as_ref().and_then(|c| c.get(key)))
                .or_else(|| token_name(special.as_ref().and_then(|s| s.get(key))))
                .unwrap_or_else(|| default.to_owned());
            let id = tokenizer
                .token_to_id(&name)
                .ok_or_else(|| fail(format!("{key} '{name}' is not in the vocabulary")))?;
            if !specials.iter().any(|(n, _)| *n == name) {
                specials.push((name, id));
            }
            Ok(id)
        };
        let bos = lookup("bos_token", "<|startoftext|>")?;
        let eos = lookup("eos_token", "<|endoftext|>")?;
        let pad = lookup("pad_token", "<|endoftext|>")?;
        let _ = lookup("unk_token", "<|endoftext|>")?;
        specials.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
        let max_length = config
            .as_ref()
            .and_then(|c| c.get("model_max_length"))
            .and_then(Value::as_u64)
            .filter(|&m| (3..=4096).contains(&m))
            .unwrap_or(77) as usize;
        Ok(ClipTokenizer { tokenizer, bos, eos, pad, max_length, specials })
    }

    /// The BPE ids of a text, without framing.
    pub fn tokens(&self, text: &str) -> Result<Vec<u32>, DiffusionError> {
        let mut ids = Vec::new();
        let mut rest = text;
        loop {
            // The earliest special token in the rest of the text (longest on a tie).
            let next = self
                .specials
                .iter()
                .filter_map(|(name, id)| rest.find(name.as_str()).map(|at| (at, name.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
            let (segment, special) = match next {
                Some((at, len, id)) => {
                    let segment = &rest[..at];
                    rest = &rest[at + len..];
                    (segment, Some(id))
                }
                None => (std::mem::take(&mut rest), None),
            };
            let cleaned = clean_text(segment);
            if !cleaned.is_empty() {
                let encoding = self
                    .tokenizer
                    .encode(cleaned.as_str(), false)
                    .map_err(|e| DiffusionError::Model(format!("tokenizer: {e}")))?;
                ids.extend_from_slice(encoding.get_ids());
            }
            match special {
                Some(id) => ids.push(id),
                None => return Ok(ids),
            }
        }
    }

    /// The framed ids the text encoder takes: start, up to `max_length - 2` tokens, end,
    /// padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DiffusionError> {
        let tokens = self.tokens(text)?;
        let body = self.max_length - 2;
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos);
        ids.extend(tokens.iter().take(body));
        ids.push(self.eos);
        ids.resize(self.max_length, self.pad);
        Ok(ids)
    }

    /// The sequence length the text encoder takes (77 for CLIP).
    pub fn max_length(&self) -> usize {
        self.max_length
    }
}

/// The reference tokenizer's clean-up before splitting: control and format characters
/// dropped, whitespace normalised, spaces around CJK ideographs, runs of whitespace
/// collapsed, trimmed. (NFC and lower case follow in the normalizer.)
fn clean_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let cp = c as u32;
        if cp == 0 || cp == 0xFFFD {
            continue;
        }
        if c == '\t' || c == '\n' || c == '\r' || c.is_whitespace() {
            out.push(' ');
        } else if c.is_control() || is_format(cp) {
            continue;
        } else if is_cjk(cp) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// CJK ideograph blocks, as the reference tokenizer lists them.
fn is_cjk(cp: u32) -> bool {
    matches!(cp,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// Unicode format characters (category Cf) and private use (Co), which the reference
/// drops with the control characters.
fn is_format(cp: u32) -> bool {
    matches!(cp,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
        | 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_spaces_cjk_and_drops_format_characters() {
        assert_eq!(clean_text("  a\tb\u{200d}c  日本 "), "a bc 日 本");
        assert_eq!(clean_text(""), "");
    }
}
