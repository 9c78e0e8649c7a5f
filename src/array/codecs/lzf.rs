//! The LZF filter (id 32000, as h5py writes it): liblzf's raw format per chunk, no header.
//! A control byte below 32 starts a run of that many plus one literal bytes; otherwise its
//! top three bits are a length (7: more in the next byte) and the rest, with the next byte,
//! a back-reference distance.

pub fn decompress(data: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let corrupt = || "an LZF chunk is corrupt".to_string();
    let mut out: Vec<u8> = Vec::with_capacity(size);
    let mut ip = 0;
    while ip < data.len() {
        let ctrl = data[ip] as usize;
        ip += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            let lit = data.get(ip..ip + run).ok_or_else(corrupt)?;
            if out.len() + run > size {
                return Err(too_big(size));
            }
            out.extend_from_slice(lit);
            ip += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *data.get(ip).ok_or_else(corrupt)? as usize;
                ip += 1;
            }
            len += 2;
            let low = *data.get(ip).ok_or_else(corrupt)? as usize;
            ip += 1;
            let dist = ((ctrl & 0x1f) << 8) + low + 1;
            if dist > out.len() {
                return Err(corrupt());
            }
            if out.len() + len > size {
                return Err(too_big(size));
            }
            let from = out.len() - dist;
            if dist >= len {
                out.extend_from_within(from..from + len);
            } else {
                // An overlapping copy repeats the last `dist` bytes.
                for k in 0..len {
                    out.push(out[from + k]);
                }
            }
        }
    }
    if out.len() != size {
        return Err(format!(
            "an LZF chunk decompresses to {} bytes, its chunk has {size}",
            out.len()
        ));
    }
    Ok(out)
}

fn too_big(size: usize) -> String {
    format!("an LZF chunk decompresses to more than the {size} bytes of its chunk")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_back_references_and_overlaps() {
        // "abc" literal, then a back-reference of length 6 at distance 3 ("abcabc"), then a
        // long one (len 7 + 3 + 2 = 12) at distance 1 repeating the last byte.
        let stored = [2, b'a', b'b', b'c', (4 << 5), 2, (7 << 5), 3, 0];
        let got = decompress(&stored, 21).unwrap();
        assert_eq!(got, b"abcabcabcccccccccccccc"[..21].to_vec());
        assert!(decompress(&stored, 20).is_err());
        assert!(decompress(&[5, 1, 2], 6).is_err(), "truncated literal");
        assert!(
            decompress(&[(1 << 5), 9], 3).is_err(),
            "reference before the start"
        );
    }
}
