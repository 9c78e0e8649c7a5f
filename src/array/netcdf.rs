//! netCDF-4 (and CF-convention HDF5) variables as inputs: a netCDF-4 file is an HDF5 file
//! and a variable is a dataset, so `--input x=file.nc:temp` reads `/temp` through HDF5. What
//! netCDF adds is in the variable's attributes, applied here as netCDF4-python applies them
//! by default (its "mask and scale"):
//!
//! - `_FillValue` and `missing_value` (in a file the netCDF library wrote and without a
//!   `_FillValue`, netCDF's default fill value for the type): those values are missing.
//!   There are no masked arrays
//!   here, so they become NaN, in a float type (float32 stays float32; integer data becomes
//!   float64, or float32 when packed with float32 attributes) — what xarray does.
//! - `scale_factor` and `add_offset`: unpacked as `raw * scale_factor + add_offset` after
//!   masking, in NumPy 2's type of that product: float32 attributes keep data of at most 16
//!   bits (and float32 data) in float32, float64 attributes give float64.
//!
//! [`Packing`] is what the attributes say ([`read`] reads them); [`apply`] composes the lazy
//! operations, so nothing is read until the expression runs.

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};

use super::block::CmpOp;
use super::data::{DType, Scalar};
use super::lazy::{Array, ArrayResult, Operand};

/// The CF attributes of one variable that change its values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Packing {
    /// `_FillValue` and `missing_value` (each may be a list), as numbers of the variable's
    /// own type.
    pub missing: Vec<Scalar>,
    pub scale_factor: Option<f64>,
    pub add_offset: Option<f64>,
    /// Whether the packing attributes are float32 (else float64).
    pub packed_f32: bool,
    /// Whether the file's element type is at most 16 bits wide, or float32 (what float32
    /// attributes keep in float32).
    pub narrow: bool,
}

impl Packing {
    pub fn is_identity(&self) -> bool {
        self.missing.is_empty() && self.scale_factor.is_none() && self.add_offset.is_none()
    }

    /// The type the values come out in.
    pub fn dtype(&self, raw: DType) -> DType {
        let packed = self.scale_factor.is_some() || self.add_offset.is_some();
        match (packed, raw) {
            (true, _) if self.packed_f32 && self.narrow => DType::F32,
            (true, _) => DType::F64,
            (false, DType::F32) => DType::F32,
            (false, _) if self.missing.is_empty() => raw,
            (false, _) => DType::F64,
        }
    }
}

/// The variable's values as netCDF4-python gives them by default, NaN where it masks.
pub fn apply(raw: &Array, p: &Packing) -> ArrayResult<Array> {
    if p.is_identity() {
        return Ok(raw.clone());
    }
    let dtype = p.dtype(raw.dtype());
    let mut x = raw.astype(dtype);
    if !p.missing.is_empty() {
        // Compared in the raw type, exactly: a fill value is a bit pattern, not a float.
        let mut mask: Option<Array> = None;
        for &m in &p.missing {
            let hit = match m {
                Scalar::Float(f) if f.is_nan() => raw.unary(super::block::UnaryOp::IsNan)?,
                m => raw.compare_scalar(CmpOp::Eq, m, false)?,
            };
            mask = Some(match mask {
                None => hit,
                Some(prev) => prev.binary(super::block::BinOp::BitOr, &hit)?,
            });
        }
        let mask = mask.expect("at least one missing value");
        x = Array::where_(
            &mask,
            Operand::Number(Scalar::Float(f64::NAN)),
            Operand::Array(x),
        )?;
    }
    if let Some(s) = p.scale_factor {
        x = x.with_scalar(super::block::BinOp::Mul, Scalar::Float(s), false)?;
    }
    if let Some(o) = p.add_offset {
        x = x.with_scalar(super::block::BinOp::Add, Scalar::Float(o), false)?;
    }
    Ok(x)
}

/// netCDF's default fill value for a type (netcdf.h's NC_FILL_*), which netCDF4-python
/// masks in variables without a `_FillValue`.
pub fn default_fill(t: &TypeDescriptor) -> Option<Scalar> {
    Some(match t {
        TypeDescriptor::Integer(IntSize::U1) => Scalar::Int(-127),
        TypeDescriptor::Unsigned(IntSize::U1) => Scalar::Int(255),
        TypeDescriptor::Integer(IntSize::U2) => Scalar::Int(-32767),
        TypeDescriptor::Unsigned(IntSize::U2) => Scalar::Int(65535),
        TypeDescriptor::Integer(IntSize::U4) => Scalar::Int(-2147483647),
        TypeDescriptor::Unsigned(IntSize::U4) => Scalar::Int(4294967295),
        TypeDescriptor::Integer(IntSize::U8) => Scalar::Int(-9223372036854775806),
        TypeDescriptor::Float(FloatSize::U4) => Scalar::Float(f64::from(9.969_21e36_f32)),
        TypeDescriptor::Float(FloatSize::U8) => Scalar::Float(9.969_209_968_386_869e36),
        _ => return None,
    })
}

/// The [`Packing`] of `file:dataset` from its attributes.
pub fn read(file: &str, dataset: &str) -> Result<Packing, String> {
    let err = |e: hdf5::Error| format!("{file}:{dataset}: {e}");
    let f = hdf5::File::open(file).map_err(err)?;
    let ds = f.dataset(dataset).map_err(err)?;
    let raw = ds.dtype().map_err(err)?.to_descriptor().ok();
    let is_int = matches!(
        raw,
        Some(TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_))
    );
    let narrow = matches!(
        raw,
        Some(
            TypeDescriptor::Integer(IntSize::U1 | IntSize::U2)
                | TypeDescriptor::Unsigned(IntSize::U1 | IntSize::U2)
                | TypeDescriptor::Float(FloatSize::U2 | FloatSize::U4)
        )
    );
    let names = ds.attr_names().map_err(err)?;
    let mut p = Packing {
        narrow,
        ..Packing::default()
    };
    // The netCDF library fills what was never written with a default per type, and
    // netCDF4-python masks it when there is no _FillValue. Only in files that library wrote
    // (it marks them with _NCProperties): a plain HDF5 file's -32767 is a value.
    for name in ["_FillValue", "missing_value"] {
        if !names.iter().any(|n| n == name) {
            continue;
        }
        let a = ds.attr(name).map_err(err)?;
        if is_int {
            let v: Vec<i64> = a.read_raw().map_err(err)?;
            p.missing.extend(v.into_iter().map(Scalar::Int));
        } else {
            let v: Vec<f64> = a.read_raw().map_err(err)?;
            p.missing.extend(v.into_iter().map(Scalar::Float));
        }
    }
    for name in ["scale_factor", "add_offset"] {
        if !names.iter().any(|n| n == name) {
            continue;
        }
        let a = ds.attr(name).map_err(err)?;
        let t = a.dtype().map_err(err)?.to_descriptor().ok();
        if matches!(t, Some(TypeDescriptor::Float(FloatSize::U4))) {
            p.packed_f32 = true;
        }
        let v: Vec<f64> = a.read_raw().map_err(err)?;
        let [v] = v[..] else {
            return Err(format!(
                "{file}:{dataset}: its {name} attribute holds {} values, not one",
                v.len()
            ));
        };
        if name == "scale_factor" {
            p.scale_factor = Some(v);
        } else {
            p.add_offset = Some(v);
        }
    }
    // The netCDF library fills what was never written with a default per type, and
    // netCDF4-python masks it when there is no _FillValue. Only in files that library wrote
    // (it marks them with _NCProperties): a plain HDF5 file's -32767 is a value. And only
    // where the result is a float anyway: an integer variable keeps its type (its type is
    // fixed before any value is read), so there the default fill stays a value.
    let by_netcdf = f
        .attr_names()
        .is_ok_and(|a| a.iter().any(|n| n == "_NCProperties"));
    let floats = !is_int || p.scale_factor.is_some() || p.add_offset.is_some();
    if by_netcdf && floats && !names.iter().any(|n| n == "_FillValue") {
        p.missing.extend(raw.as_ref().and_then(default_fill));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_netcdf4_python() {
        let packed = |f32: bool, narrow: bool| Packing {
            scale_factor: Some(0.5),
            packed_f32: f32,
            narrow,
            ..Packing::default()
        };
        // int16 * float32 scale: float32; int32 * float32: float64; any * float64: float64.
        assert_eq!(packed(true, true).dtype(DType::I32), DType::F32);
        assert_eq!(packed(true, false).dtype(DType::I32), DType::F64);
        assert_eq!(packed(false, true).dtype(DType::I32), DType::F64);
        let filled = Packing {
            missing: vec![Scalar::Int(-1)],
            ..Packing::default()
        };
        assert_eq!(filled.dtype(DType::I64), DType::F64);
        assert_eq!(filled.dtype(DType::F32), DType::F32);
        assert_eq!(Packing::default().dtype(DType::I32), DType::I32);
        assert!(Packing::default().is_identity());
    }

    #[test]
    fn apply_builds_mask_then_scale() {
        let raw = Array::arange(Scalar::Int(0), Scalar::Int(6), Scalar::Int(1), None).unwrap();
        let p = Packing {
            missing: vec![Scalar::Int(2), Scalar::Int(5)],
            scale_factor: Some(0.5),
            add_offset: Some(10.0),
            ..Packing::default()
        };
        let x = apply(&raw, &p).unwrap();
        assert_eq!((x.shape(), x.dtype()), (&[6usize][..], DType::F64));
        assert_eq!(
            apply(&raw, &Packing::default()).unwrap().dtype(),
            DType::I64
        );
    }
}
