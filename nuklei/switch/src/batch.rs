//! A SendMsg batch owned compactly: every port and body of the batch in one string, and spans
//! into it. The multi-instance switch keeps a batch across mesh round trips (its targets are
//! resolved on other instances before its messages are queued), so it must own it; this way a
//! batch of a thousand messages is four allocations, not three per message.

use crate::json::Escaping;

/// Byte range in [`SendBatch`]'s text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    /// The range of text bytes.
    #[inline(always)]
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One message: its targets (a range of the flattened target list), its body, and whether
/// its targets and body hold bytes JSON escapes (as the request parser found them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) first_target: u32,
    pub(crate) targets: u32,
    pub(crate) body: Span,
    pub(crate) escaping: Escaping,
}

/// The `(targets, body)` messages of a SendMsg, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendBatch {
    text: String,
    targets: Vec<Span>,
    messages: Vec<Message>,
    /// The longest body and target pushed, so that limits are checked without a look at
    /// each.
    longest_body: usize,
    longest_target: usize,
}

impl SendBatch {
    /// An empty batch with room for about `messages` messages.
    pub fn with_capacity(messages: usize) -> SendBatch {
        SendBatch {
            text: String::with_capacity(messages * 96),
            targets: Vec::with_capacity(messages),
            messages: Vec::with_capacity(messages),
            longest_body: 0,
            longest_target: 0,
        }
    }

    fn span(&mut self, s: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Span {
            start,
            end: self.text.len() as u32,
        }
    }

    fn get(&self, span: Span) -> &str {
        &self.text[span.start as usize..span.end as usize]
    }

    /// Appends a message to `targets` (`""` broadcasts). A target listed twice is one target.
    pub fn push<'a>(&mut self, targets: impl IntoIterator<Item = &'a str>, body: &str) {
        self.push_as(targets, body, Escaping::Scan);
    }

    /// [`SendBatch::push`] of a message whose [`Escaping`] (of its targets and body) is known:
    /// its pushes copy a [`Escaping::Plain`] message without scanning it for bytes to escape.
    pub fn push_as<'a>(
        &mut self,
        targets: impl IntoIterator<Item = &'a str>,
        body: &str,
        escaping: Escaping,
    ) {
        let first_target = self.targets.len() as u32;
        for t in targets {
            self.longest_target = self.longest_target.max(t.len());
            let span = self.span(t);
            self.targets.push(span);
        }
        self.longest_body = self.longest_body.max(body.len());
        let text = self.text.as_str();
        let mine = &self.targets[first_target as usize..];
        if let Some(keep) = distinct(mine, |s| &text[s.start as usize..s.end as usize]) {
            let kept: Vec<Span> = keep.into_iter().map(|i| mine[i]).collect();
            self.targets.truncate(first_target as usize);
            self.targets.extend(kept);
        }
        let body = self.span(body);
        self.messages.push(Message {
            first_target,
            targets: self.targets.len() as u32 - first_target,
            body,
            escaping,
        });
    }

    /// [`SendBatch::push_as`] of a message to one target: no list of targets to make
    /// distinct, and its target and body side by side in the text.
    pub fn push_one(&mut self, target: &str, body: &str, escaping: Escaping) {
        let start = self.text.len() as u32;
        // No room taken for both first: the readers reserve a batch's room from its first
        // message (`SendBatch::reserve`) and each `push_str` checks its own; a `reserve` here
        // was a third check (5 instructions per message).
        self.text.push_str(target);
        let mid = self.text.len() as u32;
        self.text.push_str(body);
        let end = self.text.len() as u32;
        self.longest_target = self.longest_target.max(target.len());
        self.longest_body = self.longest_body.max(body.len());
        let first_target = self.targets.len() as u32;
        self.targets.push(Span { start, end: mid });
        self.messages.push(Message {
            first_target,
            targets: 1,
            body: Span { start: mid, end },
            escaping,
        });
    }

    /// Room for `messages` more messages (to one target each) of `bytes` more bytes of
    /// targets and bodies in all.
    pub fn reserve(&mut self, messages: usize, bytes: usize) {
        self.text.reserve(bytes);
        self.targets.reserve(messages);
        self.messages.reserve(messages);
    }

    /// Bytes of targets and bodies held.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether there are no messages.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Number of targets over all messages.
    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// The length of the longest body (0 if there are no messages).
    pub fn longest_body(&self) -> usize {
        self.longest_body
    }

    /// The length of the longest target (0 if there are none).
    pub fn longest_target(&self) -> usize {
        self.longest_target
    }

    /// Every target, flattened in batch order.
    pub fn targets(&self) -> impl Iterator<Item = &str> + '_ {
        self.targets.iter().map(|&s| self.get(s))
    }

    /// The batch as its parts, for walking it without slicing strings: the text, the target
    /// spans (flattened in batch order) and the messages (each a range of the targets, a body
    /// span and its [`Escaping`]). A message's only target is followed at once by its body in
    /// the text (`push_as` writes them in that order), so the two are one slice of it: check
    /// `target.end == body.start`.
    pub(crate) fn parts(&self) -> (&str, &[Span], &[Message]) {
        (&self.text, &self.targets, &self.messages)
    }

    /// The messages in order: each one's targets and body.
    pub fn messages(&self) -> impl Iterator<Item = (impl Iterator<Item = &str> + '_, &str)> + '_ {
        self.messages_as().map(|(targets, body, _)| (targets, body))
    }

    /// The messages in order: each one's targets, body and [`Escaping`].
    pub fn messages_as(
        &self,
    ) -> impl Iterator<Item = (impl Iterator<Item = &str> + '_, &str, Escaping)> + '_ {
        self.messages.iter().map(|m| {
            let targets =
                &self.targets[m.first_target as usize..(m.first_target + m.targets) as usize];
            (
                targets.iter().map(|&s| self.get(s)),
                self.get(m.body),
                m.escaping,
            )
        })
    }
}

impl<S: AsRef<str>, B: AsRef<str>> FromIterator<(Vec<S>, B)> for SendBatch {
    fn from_iter<I: IntoIterator<Item = (Vec<S>, B)>>(iter: I) -> SendBatch {
        let mut batch = SendBatch::default();
        for (targets, body) in iter {
            batch.push(targets.iter().map(AsRef::as_ref), body.as_ref());
        }
        batch
    }
}

/// A request's port names owned compactly: every name in one string, and where each ends. The
/// multi-instance switch keeps a RegPort's names until every shard answered (to name the
/// failed ports and to roll back), so it must own them; this way a request of a thousand ports
/// is two allocations, not one per port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortNames {
    text: String,
    ends: Vec<u32>,
}

impl PortNames {
    /// Empty, with room for `names` names of `bytes` bytes in all (growing a request's text by
    /// doubling copies it ~10 times).
    pub fn with_capacity(names: usize, bytes: usize) -> PortNames {
        PortNames {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(names),
        }
    }

    /// Room for `names` more names of `bytes` more bytes in all.
    pub fn reserve(&mut self, names: usize, bytes: usize) {
        self.text.reserve(bytes);
        self.ends.reserve(names);
    }

    /// Bytes of every name together.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Appends a name.
    pub fn push(&mut self, name: &str) {
        self.text.push_str(name);
        self.ends.push(self.text.len() as u32);
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no names.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The names' lengths in bytes, in order: what a check of their sizes needs, without
    /// slicing each name from the text (two character-boundary checks a name).
    pub fn lens(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let len = end as usize - start;
            start = end as usize;
            len
        })
    }

    /// The names in order.
    pub fn iter(&self) -> Names<'_> {
        Names {
            text: &self.text,
            ends: self.ends.iter(),
            start: 0,
        }
    }
}

/// The names of a [`PortNames`] in order.
#[derive(Clone, Debug)]
pub struct Names<'a> {
    text: &'a str,
    ends: std::slice::Iter<'a, u32>,
    /// Where the next name starts: where the one before it ended.
    start: usize,
}

impl<'a> Iterator for Names<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let end = *self.ends.next()? as usize;
        let name = &self.text[self.start..end];
        self.start = end;
        Some(name)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for Names<'_> {}

impl std::ops::Index<usize> for PortNames {
    type Output = str;

    /// The `i`-th name (panics if there are not that many, as a slice does).
    fn index(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }
}

impl<S: AsRef<str>> FromIterator<S> for PortNames {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> PortNames {
        let iter = iter.into_iter();
        let mut names = PortNames {
            text: String::new(),
            ends: Vec::with_capacity(iter.size_hint().0),
        };
        for name in iter {
            names.push(name.as_ref());
        }
        names
    }
}

impl From<Vec<String>> for PortNames {
    fn from(names: Vec<String>) -> PortNames {
        names.iter().collect()
    }
}

/// The positions of the first occurrence of each distinct target, in order, or `None` when
/// no target is listed twice (the usual case, found without allocating for short lists).
pub fn distinct<'s, T>(targets: &'s [T], name: impl Fn(&'s T) -> &'s str) -> Option<Vec<usize>> {
    if targets.len() < 2 {
        return None;
    }
    if targets.len() <= 16 {
        let twice =
            (1..targets.len()).any(|i| targets[..i].iter().any(|t| name(t) == name(&targets[i])));
        if !twice {
            return None;
        }
    }
    let mut seen = hashbrown::HashSet::with_capacity(targets.len());
    let keep: Vec<usize> = (0..targets.len())
        .filter(|&i| seen.insert(name(&targets[i])))
        .collect();
    (keep.len() < targets.len()).then_some(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_back_in_order_with_their_targets() {
        let batch: SendBatch = [
            (vec!["a", "b"], "one"),
            (vec![""], "all"),
            (vec![], "none"),
            (vec!["ü"], ""),
        ]
        .into_iter()
        .collect();
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.target_count(), 4);
        assert_eq!((batch.longest_body(), batch.longest_target()), (4, 2));
        assert_eq!(
            (
                SendBatch::default().longest_body(),
                SendBatch::default().longest_target()
            ),
            (0, 0)
        );
        assert_eq!(batch.targets().collect::<Vec<_>>(), ["a", "b", "", "ü"]);
        let got: Vec<(Vec<&str>, &str)> = batch.messages().map(|(t, b)| (t.collect(), b)).collect();
        assert_eq!(
            got,
            [
                (vec!["a", "b"], "one"),
                (vec![""], "all"),
                (vec![], "none"),
                (vec!["ü"], "")
            ]
        );
    }

    #[test]
    fn a_message_to_one_target_is_the_same_by_push_one_with_its_body_after_its_target() {
        let mut one = SendBatch::with_capacity(3);
        let mut general = SendBatch::with_capacity(3);
        for (target, body, escaping) in [
            ("p-1", "hello", Escaping::Plain),
            ("ü", "", Escaping::Scan),
            ("", "all", Escaping::Scan),
        ] {
            one.push_one(target, body, escaping);
            general.push_as([target], body, escaping);
        }
        assert_eq!(one, general);
        let (text, targets, messages) = one.parts();
        for m in messages {
            let t = targets[m.first_target as usize];
            assert_eq!(t.end, m.body.start, "the body follows the target");
        }
        assert_eq!(&text[targets[1].range()], "ü");
        assert_eq!((one.longest_body(), one.longest_target()), (5, 3));
    }

    #[test]
    fn push_one_into_a_batch_without_room_grows_between_target_and_body_and_keeps_them_side_by_side(
    ) {
        // No room reserved: the text grows while the target is copied, while the body is, or
        // between the two (push_one takes no room of its own for both).
        let mut one = SendBatch::default();
        let mut general = SendBatch::default();
        for i in 0..200 {
            let target = "t".repeat(i % 7 + 1) + "ü";
            let body = "b".repeat((i * 13) % 97);
            one.push_one(&target, &body, Escaping::Plain);
            general.push_as([target.as_str()], &body, Escaping::Plain);
        }
        assert_eq!(one, general);
        let (text, targets, messages) = one.parts();
        for (i, m) in messages.iter().enumerate() {
            let t = targets[m.first_target as usize];
            assert_eq!(t.end, m.body.start, "the body follows the target");
            assert_eq!(&text[t.range()], "t".repeat(i % 7 + 1) + "ü");
            assert_eq!(&text[m.body.range()], "b".repeat((i * 13) % 97));
        }
        assert_eq!((one.longest_body(), one.longest_target()), (96, 9));
    }

    #[test]
    fn port_names_come_back_in_order_by_index_and_iteration() {
        let names: PortNames = ["a", "", "ü-port", "b"].into_iter().collect();
        assert_eq!(names.len(), 4);
        assert_eq!(&names[0], "a");
        assert_eq!(&names[1], "");
        assert_eq!(&names[2], "ü-port");
        assert_eq!(names.iter().collect::<Vec<_>>(), ["a", "", "ü-port", "b"]);
        // The lengths in bytes, in order, as the names give them.
        assert_eq!(names.lens().len(), 4);
        assert_eq!(names.lens().collect::<Vec<_>>(), [1, 0, 7, 1]);
        assert_eq!(PortNames::default().lens().next(), None);
        assert!(PortNames::default().is_empty());
        let mut sized = PortNames::with_capacity(2, 3);
        sized.push("ab");
        sized.push("c");
        assert_eq!(sized.iter().collect::<Vec<_>>(), ["ab", "c"]);
        assert_eq!(
            PortNames::from(vec!["x".to_string()]).iter().next(),
            Some("x")
        );
    }

    #[test]
    fn a_target_listed_twice_in_a_message_is_one_target() {
        let many: Vec<String> = (0..40).map(|i| format!("p{}", i % 25)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let batch: SendBatch = [
            (vec!["a", "b", "a", "", ""], "one"),
            (vec!["a"], "two"),
            (many, "many"),
        ]
        .into_iter()
        .collect();
        let got: Vec<Vec<&str>> = batch.messages().map(|(t, _)| t.collect()).collect();
        assert_eq!(got[0], ["a", "b", ""]);
        assert_eq!(got[1], ["a"]);
        assert_eq!(got[2].len(), 25);
        assert_eq!(got[2][24], "p24");
        assert_eq!(batch.target_count(), 29);
    }
}
