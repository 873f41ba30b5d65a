//! The segment-aware globs of [`crate::path_pattern`]: a small parser and matcher with the
//! semantics of `globset` 0.4 built with `literal_separator(true)` and `backslash_escape(true)`
//! (the crate this module replaces: it pulled a regex engine into the wasm module).
//!
//! Syntax, over a pattern's text:
//! * `*`: any run of bytes without `/`; `?`: one byte that is not `/` (the path patterns refuse
//!   `?` before it gets here).
//! * `**` as a whole component: `**/` at the start of the pattern (or of an alternative) matches
//!   nothing or anything ending in `/`; `/**/` matches `/` or `/` + anything + `/`; a final `/**`
//!   (also right before `,` or `}` inside `{...}`) matches `/` + anything. The whole pattern
//!   `**` matches everything. Anywhere else `**` is two `*`, never an error: `/a**b` and
//!   `/a/**b` stay within one segment. "After `/`" means the character consumed before the
//!   `**`, escaped or not (`\/**` counts; inside a group so do an escaped `,` or `{`, which the
//!   recursive token then replaces, as in globset).
//! * `[...]`, `[!...]`, `[^...]`: one byte in (not in) the class. A `]` or `-` first in the
//!   class, or a `-` last, is a member; `a-z` is a range, and a further `-x` sets its end again
//!   (`a-b-d` is `a-d`, `a-c-b` is `a-b`; only the start is checked). `\` is not an escape
//!   inside a class. A class may match `/` (only `*` and `?` respect separators).
//!   Members are bytes: a non-ASCII character in a class contributes each byte of its UTF-8
//!   encoding (a range between non-ASCII characters spans from the last byte of the first to
//!   the first byte of the second), exactly as globset's byte-oriented regex reads it.
//! * `{a,b,...}`: alternatives, which may nest. An alternative that matches only the empty
//!   string by construction (`{,a}`, `{{},a}`) is dropped, so `x{,a}` matches only `xa`; if every
//!   alternative is dropped the group matches the empty string. `,` outside a group is literal.
//! * `\c`: the character `c` literally.
//!
//! Errors: an unclosed class, a range whose end is below its start, a `}` without `{`, a `{`
//! without `}`, a `\` at the end, where globset refuses the same patterns.
//!
//! Not reproduced: globset refuses a pattern whose regex exceeds 10 MiB (and `compile_matcher`
//! then panics); here any pattern compiles, in space linear in its length.
//!
//! Matching is a set simulation of a Thompson automaton compiled from the pattern: each input
//! byte advances every live state at most once, so a match costs at most
//! (states x input length) steps and no pattern backtracks exponentially. With at most 64
//! states that consume a byte (nearly every real pattern) the states that follow each one are
//! precomputed as a bit set ([`Small`]); larger patterns follow the splits at each byte.

/// Why a glob does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GlobError {
    #[error("unclosed character class: '[' without its ']'")]
    UnclosedClass,
    #[error("invalid range: '{0}' comes after '{1}'")]
    InvalidRange(char, char),
    #[error("unopened alternate group: '}}' without its '{{' (a literal '}}' is written '[}}]')")]
    UnopenedAlternates,
    #[error("unclosed alternate group: '{{' without its '}}' (a literal '{{' is written '[{{]')")]
    UnclosedAlternates,
    #[error("dangling '\\': nothing after it to escape")]
    DanglingEscape,
}

/// A compiled glob.
#[derive(Debug, Clone)]
pub(crate) struct GlobMatcher(Program);

#[derive(Debug, Clone)]
enum Program {
    /// At most 64 states: those that consume a byte, and the final one.
    Small(Small),
    General(Nfa),
}

impl GlobMatcher {
    /// Parse and compile `pattern`.
    pub(crate) fn new(pattern: &str) -> Result<GlobMatcher, GlobError> {
        let nfa = Self::automaton(pattern)?;
        Ok(GlobMatcher(match Small::new(&nfa) {
            Some(small) => Program::Small(small),
            None => Program::General(nfa),
        }))
    }

    fn automaton(pattern: &str) -> Result<Nfa, GlobError> {
        let tokens = Parser::new(pattern).parse()?;
        Ok(Compiler::compile(&tokens))
    }

    /// Whether all of `text` matches.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        match &self.0 {
            Program::Small(small) => small.matches(text.as_bytes()),
            Program::General(nfa) => nfa.matches(text.as_bytes()),
        }
    }

    /// The general matcher whatever the pattern's size (tests compare both).
    #[cfg(test)]
    pub(crate) fn new_general(pattern: &str) -> Result<GlobMatcher, GlobError> {
        Self::automaton(pattern).map(|nfa| GlobMatcher(Program::General(nfa)))
    }

    /// Whether this uses the small matcher.
    #[cfg(test)]
    pub(crate) fn is_small(&self) -> bool {
        matches!(self.0, Program::Small(_))
    }
}

/// The automaton as compiled, matched by a set simulation that follows the splits at each
/// input position.
#[derive(Debug, Clone)]
struct Nfa {
    insts: Vec<Inst>,
    classes: Vec<ByteSet>,
    start: usize,
}

impl Nfa {
    /// Whether all of `input` matches.
    fn matches(&self, input: &[u8]) -> bool {
        let insts = self.insts.as_slice();
        let mut run = Run::new(insts.len());
        let mut live = Vec::new();
        let mut next = Vec::new();
        run.add(insts, self.start, &mut live);
        for &byte in input {
            if live.is_empty() {
                return false;
            }
            run.advance();
            next.clear();
            for &pc in &live {
                let to = match insts.get(pc) {
                    Some(Inst::Byte(b, to)) if *b == byte => *to,
                    Some(Inst::Class(index, to))
                        if self
                            .classes
                            .get(*index)
                            .is_some_and(|set| set.contains(byte)) =>
                    {
                        *to
                    }
                    Some(Inst::NotSlash(to)) if byte != b'/' => *to,
                    Some(Inst::AnyByte(to)) => *to,
                    _ => continue,
                };
                run.add(insts, to, &mut next);
            }
            std::mem::swap(&mut live, &mut next);
        }
        live.iter()
            .any(|&pc| matches!(insts.get(pc), Some(Inst::Match)))
    }
}

/// What a state of [`Small`] consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consume {
    Byte(u8),
    Class(usize),
    NotSlash,
    AnyByte,
    /// The final state: consumes nothing.
    Nothing,
}

/// The automaton reduced to its consuming states and the final one (at most 64), each with the
/// set of states that follow it once the splits are resolved: a step is a few bit operations per
/// live state.
#[derive(Debug, Clone)]
struct Small {
    consume: Vec<Consume>,
    /// `follow[i]`: the states live after state `i` consumed a byte.
    follow: Vec<u64>,
    classes: Vec<ByteSet>,
    start: u64,
    accept: u64,
}

impl Small {
    fn new(nfa: &Nfa) -> Option<Small> {
        // States numbered in instruction order.
        let mut index = vec![None; nfa.insts.len()];
        let mut consume = Vec::new();
        let mut to = Vec::new();
        for (pc, inst) in nfa.insts.iter().enumerate() {
            let (kind, next) = match *inst {
                Inst::Byte(b, next) => (Consume::Byte(b), Some(next)),
                Inst::Class(class, next) => (Consume::Class(class), Some(next)),
                Inst::NotSlash(next) => (Consume::NotSlash, Some(next)),
                Inst::AnyByte(next) => (Consume::AnyByte, Some(next)),
                Inst::Match => (Consume::Nothing, None),
                Inst::Split(..) => continue,
            };
            if consume.len() == 64 {
                return None;
            }
            if let Some(slot) = index.get_mut(pc) {
                *slot = Some(consume.len());
            }
            consume.push(kind);
            to.push(next);
        }
        let closure = |pc: usize| -> u64 {
            let mut set = 0u64;
            let mut seen = vec![false; nfa.insts.len()];
            let mut stack = vec![pc];
            while let Some(pc) = stack.pop() {
                match seen.get_mut(pc) {
                    Some(mark) if !*mark => *mark = true,
                    _ => continue,
                }
                match nfa.insts.get(pc) {
                    Some(Inst::Split(a, b)) => stack.extend([*b, *a]),
                    Some(_) => {
                        if let Some(Some(i)) = index.get(pc) {
                            set |= 1 << i;
                        }
                    }
                    None => {}
                }
            }
            set
        };
        let follow = to.iter().map(|next| next.map_or(0, closure)).collect();
        let accept = consume
            .iter()
            .position(|kind| *kind == Consume::Nothing)
            .map_or(0, |i| 1 << i);
        Some(Small {
            consume,
            follow,
            classes: nfa.classes.clone(),
            start: closure(nfa.start),
            accept,
        })
    }

    fn matches(&self, input: &[u8]) -> bool {
        let mut live = self.start;
        for &byte in input {
            let mut next = 0u64;
            let mut rest = live;
            while rest != 0 {
                let i = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                let takes = match self.consume.get(i) {
                    Some(Consume::Byte(b)) => *b == byte,
                    Some(Consume::Class(class)) => self
                        .classes
                        .get(*class)
                        .is_some_and(|set| set.contains(byte)),
                    Some(Consume::NotSlash) => byte != b'/',
                    Some(Consume::AnyByte) => true,
                    Some(Consume::Nothing) | None => false,
                };
                if takes {
                    next |= self.follow.get(i).copied().unwrap_or(0);
                }
            }
            if next == 0 {
                return false;
            }
            live = next;
        }
        live & self.accept != 0
    }
}

/// A parsed pattern element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    Question,
    /// `*`
    Star,
    /// `**/` at the start of a branch: nothing, or anything ending in `/`.
    RecursivePrefix,
    /// `/**` at the end of a branch: `/` then anything.
    RecursiveSuffix,
    /// `/**/`: `/`, or `/` + anything + `/`.
    RecursiveMiddle,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Alternates(Vec<Vec<Token>>),
}

/// An alternation group being parsed: the alternatives finished so far and the tokens before
/// the group's `{`.
struct Group {
    alternatives: Vec<Vec<Token>>,
    outer: Vec<Token>,
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    /// The character consumed before `cur`, and the last consumed one.
    prev: Option<char>,
    cur: Option<char>,
    /// The tokens of the branch being parsed (top level or the innermost open alternative).
    current: Vec<Token>,
    /// The open groups, innermost last.
    groups: Vec<Group>,
}

impl<'a> Parser<'a> {
    fn new(pattern: &'a str) -> Self {
        Parser {
            chars: pattern.chars().peekable(),
            prev: None,
            cur: None,
            current: Vec::new(),
            groups: Vec::new(),
        }
    }

    fn bump(&mut self) -> Option<char> {
        self.prev = self.cur;
        self.cur = self.chars.next();
        self.cur
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn push(&mut self, token: Token) {
        self.current.push(token);
    }

    fn parse(mut self) -> Result<Vec<Token>, GlobError> {
        while let Some(c) = self.bump() {
            match c {
                '?' => self.push(Token::Question),
                '*' => self.star(),
                '[' => self.class()?,
                '{' => {
                    let outer = std::mem::take(&mut self.current);
                    self.groups.push(Group {
                        alternatives: Vec::new(),
                        outer,
                    });
                }
                '}' => {
                    let mut group = self.groups.pop().ok_or(GlobError::UnopenedAlternates)?;
                    group
                        .alternatives
                        .push(std::mem::replace(&mut self.current, group.outer));
                    self.push(Token::Alternates(group.alternatives));
                }
                ',' => match self.groups.last_mut() {
                    Some(group) => group.alternatives.push(std::mem::take(&mut self.current)),
                    None => self.push(Token::Literal(',')),
                },
                '\\' => {
                    let escaped = self.bump().ok_or(GlobError::DanglingEscape)?;
                    self.push(Token::Literal(escaped));
                }
                c => self.push(Token::Literal(c)),
            }
        }
        if !self.groups.is_empty() {
            return Err(GlobError::UnclosedAlternates);
        }
        Ok(self.current)
    }

    /// After a `*`. Whether a `**` is recursive depends on the character before it (`prev`,
    /// however it was consumed: `\/**` counts as after `/`) and the one after it.
    fn star(&mut self) {
        let before = self.prev;
        if self.peek() != Some('*') {
            self.push(Token::Star);
            return;
        }
        self.bump();
        let in_group = !self.groups.is_empty();
        if self.current.is_empty() {
            // At the start of the pattern or of an alternative: `**` then `/` or the end.
            match self.peek() {
                Some(c) if c != '/' => self.push_two_stars(),
                _ => {
                    self.push(Token::RecursivePrefix);
                    self.bump();
                }
            }
            return;
        }
        let after_separator =
            before == Some('/') || (in_group && matches!(before, Some(',') | Some('{')));
        if !after_separator {
            self.push_two_stars();
            return;
        }
        let suffix = match self.peek() {
            None => true,
            Some(',' | '}') if in_group => true,
            Some('/') => {
                self.bump();
                false
            }
            Some(_) => {
                self.push_two_stars();
                return;
            }
        };
        // The token before (normally the literal `/`) becomes part of the recursive token.
        let replaced = match self.current.pop() {
            Some(Token::RecursivePrefix) => Token::RecursivePrefix,
            Some(Token::RecursiveSuffix) => Token::RecursiveSuffix,
            _ if suffix => Token::RecursiveSuffix,
            _ => Token::RecursiveMiddle,
        };
        self.push(replaced);
    }

    fn push_two_stars(&mut self) {
        self.push(Token::Star);
        self.push(Token::Star);
    }

    /// After a `[`.
    fn class(&mut self) -> Result<(), GlobError> {
        let negated = matches!(self.peek(), Some('!' | '^'));
        if negated {
            self.bump();
        }
        let mut ranges: Vec<(char, char)> = Vec::new();
        let mut first = true;
        let mut in_range = false;
        loop {
            let c = self.bump().ok_or(GlobError::UnclosedClass)?;
            match c {
                ']' if !first => break,
                '-' if !first && !in_range => in_range = true,
                c => {
                    match ranges.last_mut() {
                        Some(range) if in_range => {
                            if c < range.0 {
                                return Err(GlobError::InvalidRange(range.0, c));
                            }
                            range.1 = c;
                        }
                        _ => ranges.push((c, c)),
                    }
                    in_range = false;
                }
            }
            first = false;
        }
        if in_range {
            ranges.push(('-', '-'));
        }
        self.push(Token::Class { negated, ranges });
        Ok(())
    }
}

/// A set of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, byte: u8) {
        if let Some(word) = self.0.get_mut(usize::from(byte >> 6)) {
            *word |= 1 << (byte & 63);
        }
    }

    fn insert_range(&mut self, lo: u8, hi: u8) {
        for byte in lo..=hi {
            self.insert(byte);
        }
    }

    fn contains(&self, byte: u8) -> bool {
        self.0
            .get(usize::from(byte >> 6))
            .is_some_and(|word| word & (1 << (byte & 63)) != 0)
    }

    fn complement(self) -> ByteSet {
        ByteSet(self.0.map(|word| !word))
    }

    /// A class's bytes. A member character adds the bytes of its UTF-8 encoding; a range
    /// `lo-hi` adds the bytes of `lo` but its last, the bytes from that last one to the first
    /// byte of `hi`, and the rest of `hi` (the same as ASCII ranges for ASCII characters).
    fn of_class(negated: bool, ranges: &[(char, char)]) -> ByteSet {
        let mut set = ByteSet::default();
        for &(lo, hi) in ranges {
            let (mut lo_buf, mut hi_buf) = ([0; 4], [0; 4]);
            let lo_bytes = lo.encode_utf8(&mut lo_buf).as_bytes();
            if lo == hi {
                lo_bytes.iter().for_each(|&b| set.insert(b));
                continue;
            }
            let hi_bytes = hi.encode_utf8(&mut hi_buf).as_bytes();
            if let (Some((&lo_last, lo_rest)), Some((&hi_first, hi_rest))) =
                (lo_bytes.split_last(), hi_bytes.split_first())
            {
                lo_rest.iter().for_each(|&b| set.insert(b));
                // `lo < hi` makes `lo_last <= hi_first`: a continuation byte (<= 0xBF) is
                // always below a leading byte (>= 0xC2).
                set.insert_range(lo_last, hi_first);
                hi_rest.iter().for_each(|&b| set.insert(b));
            }
        }
        if negated {
            set.complement()
        } else {
            set
        }
    }
}

/// One automaton state; the `usize`s are the states that follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inst {
    /// Consume this byte.
    Byte(u8, usize),
    /// Consume a byte of `classes[index]`.
    Class(usize, usize),
    /// Consume any byte but `/`.
    NotSlash(usize),
    /// Consume any byte.
    AnyByte(usize),
    /// Continue at both.
    Split(usize, usize),
    Match,
}

/// Compiles tokens back to front, so each state is built knowing the state that follows it.
struct Compiler {
    insts: Vec<Inst>,
    classes: Vec<ByteSet>,
}

impl Compiler {
    fn compile(tokens: &[Token]) -> Nfa {
        let mut c = Compiler {
            insts: Vec::new(),
            classes: Vec::new(),
        };
        let done = c.push(Inst::Match);
        // The whole pattern `**` matches everything, `/` or not.
        let start = if tokens == [Token::RecursivePrefix] {
            c.repeat(Inst::AnyByte, done)
        } else {
            c.sequence(tokens, done)
        };
        Nfa {
            insts: c.insts,
            classes: c.classes,
            start,
        }
    }

    fn push(&mut self, inst: Inst) -> usize {
        self.insts.push(inst);
        self.insts.len() - 1
    }

    fn sequence(&mut self, tokens: &[Token], next: usize) -> usize {
        tokens
            .iter()
            .rev()
            .fold(next, |next, token| self.token(token, next))
    }

    fn token(&mut self, token: &Token, next: usize) -> usize {
        match token {
            Token::Literal(c) => {
                let mut buf = [0; 4];
                let bytes = c.encode_utf8(&mut buf).as_bytes();
                bytes
                    .iter()
                    .rev()
                    .fold(next, |next, &b| self.push(Inst::Byte(b, next)))
            }
            Token::Question => self.push(Inst::NotSlash(next)),
            Token::Star => self.repeat(Inst::NotSlash, next),
            Token::RecursivePrefix => self.optional_dirs(next),
            Token::RecursiveSuffix => {
                let rest = self.repeat(Inst::AnyByte, next);
                self.push(Inst::Byte(b'/', rest))
            }
            Token::RecursiveMiddle => {
                let dirs = self.optional_dirs(next);
                self.push(Inst::Byte(b'/', dirs))
            }
            Token::Class { negated, ranges } => {
                self.classes.push(ByteSet::of_class(*negated, ranges));
                let index = self.classes.len() - 1;
                self.push(Inst::Class(index, next))
            }
            Token::Alternates(alternatives) => {
                let mut starts = alternatives
                    .iter()
                    .filter(|alt| !matches_only_empty(alt))
                    .map(|alt| self.sequence(alt, next))
                    .collect::<Vec<_>>()
                    .into_iter();
                match starts.next() {
                    None => next,
                    Some(first) => starts.fold(first, |a, b| self.push(Inst::Split(a, b))),
                }
            }
        }
    }

    /// Zero or more bytes, each consumed by `consume(state after it)`, then `next`.
    fn repeat(&mut self, consume: fn(usize) -> Inst, next: usize) -> usize {
        // The split's first target is the consuming state pushed right after it.
        let split = self.push(Inst::Split(0, next));
        let body = self.push(consume(split));
        if let Some(inst) = self.insts.get_mut(split) {
            *inst = Inst::Split(body, next);
        }
        split
    }

    /// Nothing, or any bytes ending in `/`; then `next`.
    fn optional_dirs(&mut self, next: usize) -> usize {
        let slash = self.push(Inst::Byte(b'/', next));
        let dirs = self.repeat(Inst::AnyByte, slash);
        self.push(Inst::Split(next, dirs))
    }
}

/// Whether an alternative consists only of groups whose alternatives do (vacuously: it is
/// empty); globset drops such an alternative from its group.
fn matches_only_empty(tokens: &[Token]) -> bool {
    tokens.iter().all(|token| match token {
        Token::Alternates(alternatives) => alternatives.iter().all(|alt| matches_only_empty(alt)),
        _ => false,
    })
}

/// The bookkeeping of one match: which states were added at the current input position.
struct Run {
    /// `seen[pc] == generation`: `pc` was added at this position.
    seen: Vec<u32>,
    generation: u32,
    stack: Vec<usize>,
}

impl Run {
    fn new(states: usize) -> Self {
        Run {
            seen: vec![0; states],
            generation: 1,
            stack: Vec::new(),
        }
    }

    /// The next input position: nothing is added there yet.
    fn advance(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Wrapped (after 2^32 bytes): no old mark may look current.
            self.seen.iter_mut().for_each(|mark| *mark = 0);
            self.generation = 1;
        }
    }

    /// Adds to `live` the consuming (and final) states among `pc` and the states reachable
    /// from it without consuming a byte, each once per position.
    fn add(&mut self, insts: &[Inst], pc: usize, live: &mut Vec<usize>) {
        self.stack.push(pc);
        while let Some(pc) = self.stack.pop() {
            match self.seen.get_mut(pc) {
                Some(mark) if *mark != self.generation => *mark = self.generation,
                _ => continue,
            }
            match insts.get(pc) {
                Some(Inst::Split(a, b)) => {
                    self.stack.push(*b);
                    self.stack.push(*a);
                }
                Some(_) => live.push(pc),
                None => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "glob_tests.rs"]
mod tests;
