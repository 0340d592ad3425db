//! The in-memory model of a file: its bytes, as every operation so far should have left them.

/// The expected contents of one file; its length is the file's size.
#[derive(Default)]
pub(crate) struct Model {
    data: Vec<u8>,
}

/// `usize` of a file offset or length (they are bounded by the largest file size, in memory).
pub(crate) fn us(x: u64) -> usize {
    usize::try_from(x).expect("offset fits in memory")
}

impl Model {
    /// The file's size.
    pub(crate) fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The expected bytes `off..off + len` (inside the file).
    pub(crate) fn bytes(&self, off: u64, len: usize) -> &[u8] {
        &self.data[us(off)..us(off) + len]
    }

    /// A write of `data` at `off`, growing the file (with zeros before `off`) when it ends past
    /// the end. Nothing at all when `data` is empty (a write that wrote nothing).
    pub(crate) fn write(&mut self, off: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let (start, end) = (us(off), us(off) + data.len());
        if end > self.data.len() {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(data);
    }

    /// Zeros over `off..end`, clipped to the file (the size does not change).
    pub(crate) fn zero(&mut self, off: u64, end: u64) {
        let end = us(end).min(self.data.len());
        let start = us(off).min(end);
        self.data[start..end].fill(0);
    }

    /// A truncate to `size` (growing with zeros).
    pub(crate) fn resize(&mut self, size: u64) {
        self.data.resize(us(size), 0);
    }

    /// Grows the file to `size` with zeros when it is smaller.
    pub(crate) fn grow(&mut self, size: u64) {
        if size > self.size() {
            self.resize(size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Model;

    #[test]
    fn writes_grow_and_zero_fill() {
        let mut m = Model::default();
        m.write(4, &[1, 2]);
        assert_eq!(m.size(), 6);
        assert_eq!(m.bytes(0, 6), &[0, 0, 0, 0, 1, 2]);
        m.zero(5, 100);
        assert_eq!(m.bytes(0, 6), &[0, 0, 0, 0, 1, 0]);
        m.grow(3);
        assert_eq!(m.size(), 6);
        m.resize(2);
        m.grow(4);
        assert_eq!(m.bytes(0, 4), &[0; 4]);
        m.write(100, &[]);
        assert_eq!(m.size(), 4, "an empty write does not grow the file");
    }
}
