//! The slots of the streams a nukleus opens, each with the generation that tells the stream
//! ids of its successive occupants apart ([`crate::SlotIds`]): a slab and its generations in
//! one table, so opening a stream touches one entry, and retiring one writes its slot vacant
//! in place instead of moving its state out.

/// One slot: the generation of its last (or current) occupant, and the occupant if any.
#[derive(Debug, Clone)]
struct Slot<T> {
    generation: u32,
    state: State<T>,
}

#[derive(Debug, Clone)]
enum State<T> {
    Occupied(T),
    /// Vacant; the next vacant slot after it (the table's length for none).
    Vacant(usize),
}

/// A slab of `T` whose slots carry generations. [`Slots::open`] names the slot the next
/// [`Slots::insert`] fills and starts its next generation; vacant slots are reused last freed
/// first, as `slab::Slab` does.
#[derive(Debug, Clone)]
pub struct Slots<T> {
    slots: Vec<Slot<T>>,
    /// The first vacant slot (`slots.len()`: none, the next one is pushed).
    next: usize,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots::new()
    }
}

impl<T> Slots<T> {
    pub fn new() -> Slots<T> {
        Slots {
            slots: Vec::new(),
            next: 0,
            len: 0,
        }
    }

    /// Occupied slots.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot the next [`Slots::insert`] fills and the generation of its next occupant,
    /// counted from now on: calling it again without an insert in between starts yet another
    /// generation for the same slot (a stream id handed out but never used is not reused).
    #[inline]
    pub fn open(&mut self) -> (usize, u32) {
        let key = self.next;
        if key == self.slots.len() {
            self.slots.push(Slot {
                generation: 0,
                state: State::Vacant(key + 1),
            });
        }
        let slot = &mut self.slots[key];
        slot.generation = slot.generation.wrapping_add(1);
        (key, slot.generation)
    }

    /// Stores `value` in the first vacant slot (the one [`Slots::open`] named) and returns it.
    #[inline]
    pub fn insert(&mut self, value: T) -> usize {
        let key = self.next;
        if key == self.slots.len() {
            self.slots.push(Slot {
                generation: 0,
                state: State::Occupied(value),
            });
            self.next = key + 1;
        } else {
            let slot = &mut self.slots[key];
            let State::Vacant(next) = slot.state else {
                unreachable!("the first vacant slot is vacant");
            };
            self.next = next;
            slot.state = State::Occupied(value);
        }
        self.len += 1;
        key
    }

    #[inline]
    pub fn get(&self, key: usize) -> Option<&T> {
        match self.slots.get(key) {
            Some(Slot {
                state: State::Occupied(value),
                ..
            }) => Some(value),
            _ => None,
        }
    }

    #[inline]
    pub fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.slots.get_mut(key) {
            Some(Slot {
                state: State::Occupied(value),
                ..
            }) => Some(value),
            _ => None,
        }
    }

    pub fn contains(&self, key: usize) -> bool {
        self.get(key).is_some()
    }

    /// The generation of the slot's current (or last) occupant; 0 for a slot never opened.
    pub fn generation(&self, key: usize) -> u32 {
        self.slots.get(key).map_or(0, |slot| slot.generation)
    }

    /// Takes the value out of slot `key`, which becomes the first vacant one.
    ///
    /// # Panics
    /// If the slot is vacant.
    pub fn remove(&mut self, key: usize) -> T {
        self.try_remove(key).expect("remove of a vacant slot")
    }

    /// [`Slots::remove`], or `None` (nothing changed) if the slot is vacant.
    pub fn try_remove(&mut self, key: usize) -> Option<T> {
        let slot = self.slots.get_mut(key)?;
        if !matches!(slot.state, State::Occupied(_)) {
            return None;
        }
        let State::Occupied(value) = std::mem::replace(&mut slot.state, State::Vacant(self.next))
        else {
            unreachable!("checked occupied")
        };
        self.next = key;
        self.len -= 1;
        Some(value)
    }

    /// Drops the value in slot `key` where it is (not moved out, as [`Slots::remove`] does),
    /// and the slot becomes the first vacant one. Nothing happens if the slot is vacant.
    #[inline]
    pub fn discard(&mut self, key: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            if let State::Occupied(_) = slot.state {
                slot.state = State::Vacant(self.next);
                self.next = key;
                self.len -= 1;
            }
        }
    }

    /// The occupied slots and their values, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(key, slot)| match &slot.state {
                State::Occupied(value) => Some((key, value)),
                State::Vacant(_) => None,
            })
    }
}

impl<T> std::ops::Index<usize> for Slots<T> {
    type Output = T;

    #[inline]
    fn index(&self, key: usize) -> &T {
        self.get(key).expect("a vacant slot")
    }
}

impl<T> std::ops::IndexMut<usize> for Slots<T> {
    #[inline]
    fn index_mut(&mut self, key: usize) -> &mut T {
        self.get_mut(key).expect("a vacant slot")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_names_the_slot_insert_fills_with_a_new_generation() {
        let mut slots = Slots::new();
        assert_eq!(slots.open(), (0, 1));
        assert_eq!(slots.insert("a"), 0);
        assert_eq!(slots.open(), (1, 1));
        assert_eq!(slots.insert("b"), 1);
        assert_eq!(slots.len(), 2);
        assert_eq!(slots.generation(0), 1);
        // Freed slots are reused last freed first, each with its next generation.
        slots.discard(0);
        assert_eq!(slots.remove(1), "b");
        assert_eq!(slots.len(), 0);
        assert!(slots.get(0).is_none() && slots.get(1).is_none());
        assert_eq!(slots.open(), (1, 2));
        assert_eq!(slots.insert("c"), 1);
        assert_eq!(slots.open(), (0, 2));
        // An open that is not followed by an insert still used up its generation.
        assert_eq!(slots.open(), (0, 3));
        assert_eq!(slots.insert("d"), 0);
        assert_eq!((slots[0], slots[1]), ("d", "c"));
        assert_eq!(slots.iter().collect::<Vec<_>>(), [(0, &"d"), (1, &"c")]);
    }

    #[test]
    fn insert_without_open_and_vacant_slots_are_harmless() {
        let mut slots = Slots::new();
        assert_eq!(slots.insert(1), 0);
        assert_eq!(slots.insert(2), 1);
        assert_eq!(slots.generation(1), 0);
        assert_eq!(slots.try_remove(5), None);
        slots.discard(5);
        slots.discard(0);
        slots.discard(0);
        assert_eq!(slots.try_remove(0), None);
        assert_eq!(slots.len(), 1);
        assert!(!slots.contains(0) && slots.contains(1));
        *slots.get_mut(1).unwrap() = 7;
        slots[1] += 1;
        assert_eq!(slots[1], 8);
        assert_eq!(slots.insert(3), 0);
        assert_eq!(slots.insert(4), 2);
    }

    #[test]
    #[should_panic(expected = "a vacant slot")]
    fn indexing_a_vacant_slot_panics() {
        let slots = Slots::<u8>::new();
        let _ = slots[0];
    }
}
