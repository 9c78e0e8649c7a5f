//! Elements from a decoded chunk's bytes (the file's type: width, signedness, byte order) to
//! the dtype we compute in, copying only the selected ones into their place in the result.

use ndarray::{ArrayD, IxDyn};

use super::super::block::Dim;
use super::super::data::{DType, Data};

/// A stored element type we convert ourselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    F16,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    /// h5py's bool: an enum of int8, FALSE = 0 and TRUE = 1.
    Bool,
}

/// The file's element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileType {
    pub kind: Kind,
    pub big_endian: bool,
}

impl FileType {
    pub fn size(self) -> usize {
        match self.kind {
            Kind::I8 | Kind::U8 | Kind::Bool => 1,
            Kind::F16 | Kind::I16 | Kind::U16 => 2,
            Kind::F32 | Kind::I32 | Kind::U32 => 4,
            Kind::F64 | Kind::I64 => 8,
        }
    }

    /// The dtype these elements are computed in (as `hdf5io::dtype_of` maps them).
    pub fn dtype(self) -> DType {
        match self.kind {
            Kind::F64 => DType::F64,
            Kind::F32 | Kind::F16 => DType::F32,
            Kind::I64 | Kind::U32 => DType::I64,
            Kind::I8 | Kind::I16 | Kind::I32 | Kind::U8 | Kind::U16 => DType::I32,
            Kind::Bool => DType::Bool,
        }
    }
}

/// A result being filled tile by tile: from stored bytes we convert ([`Output::scatter`],
/// when made with the file's type) or from the library's reads ([`Output::place`]).
pub struct Output {
    data: Data,
    ftype: Option<FileType>,
}

macro_rules! bytes_as {
    ($b:expr, $n:literal, $big:expr, $t:ty) => {{
        let a: [u8; $n] = $b.try_into().unwrap();
        if $big {
            <$t>::from_be_bytes(a)
        } else {
            <$t>::from_le_bytes(a)
        }
    }};
}

impl Output {
    pub fn new(shape: &[usize], dtype: DType, ftype: Option<FileType>) -> Output {
        let s = IxDyn(shape);
        let data = match dtype {
            DType::F64 => Data::F64(ArrayD::zeros(s)),
            DType::F32 => Data::F32(ArrayD::zeros(s)),
            DType::I64 => Data::I64(ArrayD::zeros(s)),
            DType::I32 => Data::I32(ArrayD::zeros(s)),
            DType::Bool => Data::Bool(ArrayD::zeros(s)),
        };
        Output { data, ftype }
    }

    pub fn finish(self) -> Data {
        self.data
    }

    /// `part` (of this result's dtype) taken every `steps` along each axis, at `offset`.
    pub fn place(&mut self, part: &Data, steps: &[u64], offset: &[usize]) {
        match (&mut self.data, part) {
            (Data::F64(o), Data::F64(p)) => super::place_into(o, p, steps, offset),
            (Data::F32(o), Data::F32(p)) => super::place_into(o, p, steps, offset),
            (Data::I64(o), Data::I64(p)) => super::place_into(o, p, steps, offset),
            (Data::I32(o), Data::I32(p)) => super::place_into(o, p, steps, offset),
            (Data::Bool(o), Data::Bool(p)) => super::place_into(o, p, steps, offset),
            _ => unreachable!("library reads are made in the result's dtype"),
        }
    }

    /// Copies the elements `sel` of a tile of shape `tile` held in `bytes` (row-major, the
    /// file's type) to `offset` of the result.
    pub fn scatter(&mut self, bytes: &[u8], tile: &[u64], sel: &[Dim], offset: &[usize]) {
        let ftype = self.ftype.expect("scatter needs the file's type");
        let big = ftype.big_endian;
        macro_rules! go {
            ($a:expr, $n:literal, $conv:expr) => {{
                let shape = $a.shape().to_vec();
                scatter_into(
                    $a.as_slice_mut().expect("a fresh array is contiguous"),
                    &shape,
                    bytes,
                    $n,
                    tile,
                    sel,
                    offset,
                    $conv,
                )
            }};
        }
        match (&mut self.data, ftype.kind) {
            (Data::F64(a), Kind::F64) => go!(a, 8, |b: &[u8]| bytes_as!(b, 8, big, f64)),
            (Data::F32(a), Kind::F32) => go!(a, 4, |b: &[u8]| bytes_as!(b, 4, big, f32)),
            (Data::F32(a), Kind::F16) => go!(a, 2, |b: &[u8]| {
                half::f16::from_bits(bytes_as!(b, 2, big, u16)).to_f32()
            }),
            (Data::I64(a), Kind::I64) => go!(a, 8, |b: &[u8]| bytes_as!(b, 8, big, i64)),
            (Data::I64(a), Kind::U32) => go!(a, 4, |b: &[u8]| bytes_as!(b, 4, big, u32) as i64),
            (Data::I32(a), Kind::I32) => go!(a, 4, |b: &[u8]| bytes_as!(b, 4, big, i32)),
            (Data::I32(a), Kind::I16) => go!(a, 2, |b: &[u8]| bytes_as!(b, 2, big, i16) as i32),
            (Data::I32(a), Kind::U16) => go!(a, 2, |b: &[u8]| bytes_as!(b, 2, big, u16) as i32),
            (Data::I32(a), Kind::I8) => go!(a, 1, |b: &[u8]| b[0] as i8 as i32),
            (Data::I32(a), Kind::U8) => go!(a, 1, |b: &[u8]| b[0] as i32),
            (Data::Bool(a), Kind::Bool) => go!(a, 1, |b: &[u8]| u8::from(b[0] != 0)),
            _ => unreachable!("a direct read's result has the file type's dtype"),
        }
    }
}

/// The strided copy: rows along the last axis, the other axes walked like an odometer.
#[allow(clippy::too_many_arguments)]
fn scatter_into<T: Copy>(
    out: &mut [T],
    out_shape: &[usize],
    bytes: &[u8],
    size: usize,
    tile: &[u64],
    sel: &[Dim],
    offset: &[usize],
    conv: impl Fn(&[u8]) -> T,
) {
    let nd = sel.len();
    if nd == 0 {
        out[0] = conv(&bytes[..size]);
        return;
    }
    if sel.iter().any(|d| d.len == 0) {
        return;
    }
    // Element strides of the tile and of the result (both row-major).
    let mut tstride = vec![1usize; nd];
    let mut ostride = vec![1usize; nd];
    for a in (0..nd - 1).rev() {
        tstride[a] = tstride[a + 1] * tile[a + 1] as usize;
        ostride[a] = ostride[a + 1] * out_shape[a + 1];
    }
    let last = nd - 1;
    let (n, step) = (sel[last].len as usize, sel[last].step.max(1) as usize);
    let mut idx = vec![0usize; nd];
    loop {
        let mut t = 0;
        let mut o = 0;
        for a in 0..nd {
            t += (sel[a].start as usize + idx[a] * sel[a].step.max(1) as usize) * tstride[a];
            o += (offset[a] + idx[a]) * ostride[a];
        }
        let row = &mut out[o..o + n];
        if step == 1 {
            let src = &bytes[t * size..(t + n) * size];
            for (v, b) in row.iter_mut().zip(src.chunks_exact(size)) {
                *v = conv(b);
            }
        } else {
            for (k, v) in row.iter_mut().enumerate() {
                let at = (t + k * step) * size;
                *v = conv(&bytes[at..at + size]);
            }
        }
        // Next row: the odometer over every axis but the last.
        let mut a = last;
        loop {
            if a == 0 {
                return;
            }
            a -= 1;
            idx[a] += 1;
            if idx[a] < sel[a].len as usize {
                break;
            }
            idx[a] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_cuts_land_in_place_in_every_type_and_byte_order() {
        // A 4x5 tile of f64 0..20, big-endian; select rows 1..4 step 2, columns 0.. step 3.
        let vals: Vec<u8> = (0..20).flat_map(|i| (i as f64).to_be_bytes()).collect();
        let ft = FileType {
            kind: Kind::F64,
            big_endian: true,
        };
        let mut out = Output::new(&[3, 3], ft.dtype(), Some(ft));
        let sel = [
            Dim {
                start: 1,
                len: 2,
                step: 2,
            },
            Dim {
                start: 0,
                len: 2,
                step: 3,
            },
        ];
        out.scatter(&vals, &[4, 5], &sel, &[1, 1]);
        let Data::F64(a) = out.finish() else { panic!() };
        assert_eq!(
            a.as_slice().unwrap(),
            &[0.0, 0.0, 0.0, 0.0, 5.0, 8.0, 0.0, 15.0, 18.0]
        );
        // Narrow and unsigned integers widen; float16 becomes float32; bools are 0/1.
        let cases: [(Kind, Vec<u8>, Vec<f64>); 5] = [
            (Kind::U16, vec![0xff, 0xff, 1, 0], vec![65535.0, 1.0]),
            (Kind::I8, vec![0xff, 7], vec![-1.0, 7.0]),
            (Kind::U32, vec![0xff; 4], vec![4294967295.0]),
            (Kind::F16, vec![0x00, 0x3c, 0x00, 0xc0], vec![1.0, -2.0]),
            (Kind::Bool, vec![0, 1, 1], vec![0.0, 1.0, 1.0]),
        ];
        for (kind, bytes, want) in cases {
            let ft = FileType {
                kind,
                big_endian: false,
            };
            let n = want.len();
            let mut out = Output::new(&[n], ft.dtype(), Some(ft));
            out.scatter(&bytes, &[n as u64], &[Dim::full(n as u64)], &[0]);
            let got = out.finish();
            assert_eq!(got.dtype(), ft.dtype());
            assert_eq!(got.to_f64().as_slice().unwrap(), &want[..], "{kind:?}");
        }
    }
}
