use super::*;

fn sample() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()))
        .meta("answer", Value::U32(42))
        .meta("list", Value::Array(vec![Value::String("a".into()), Value::String("é".into())]))
        .meta("flag", Value::Bool(true))
        .meta("pi", Value::F64(3.25));
    w.tensor("a", vec![4, 2], TensorType::F32, (0..32).collect());
    w.tensor("b", vec![32], TensorType::Q8_0, vec![7; 34]);
    w.to_bytes()
}

#[test]
fn round_trip() {
    let bytes = sample();
    let h = parse_file(&bytes).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.metadata.u64("answer").unwrap(), 42);
    assert_eq!(h.metadata.opt_strings("list").unwrap().unwrap(), vec!["a", "é"]);
    assert_eq!(h.metadata.opt_bool("flag").unwrap(), Some(true));
    assert_eq!(h.metadata.opt_f64("pi").unwrap(), Some(3.25));
    let a = h.tensor("a").unwrap();
    assert_eq!((a.dims.clone(), a.size, a.shape()), (vec![4, 2], 32, vec![2, 4]));
    let b = h.tensor("b").unwrap();
    assert_eq!((b.ty, b.size, b.offset % 32), (TensorType::Q8_0, 34, 0));
    assert_eq!(h.tensor_bytes(&bytes, b), &[7; 34]);
    assert!(h.file_size() <= bytes.len() as u64);
}

#[test]
fn every_truncation_is_a_typed_error() {
    let bytes = sample();
    let header_len = (1..=bytes.len()).find(|&n| parse_header(&bytes[..n]).is_ok()).unwrap();
    let data_end = parse_header(&bytes).unwrap().file_size() as usize; // the writer pads after it
    assert!(parse_file(&bytes[..data_end]).is_ok());
    for n in 0..data_end {
        let r = parse_file(&bytes[..n]);
        match r {
            Err(HearthError::Truncated { .. }) => {}
            Ok(_) => panic!("a {n}-byte prefix parsed as complete"),
            Err(e) => panic!("prefix {n}: expected Truncated, got {e}"),
        }
        // The header alone parses as soon as all of it is there, and not before.
        assert_eq!(parse_header(&bytes[..n]).is_ok(), n >= header_len);
    }
}

#[test]
fn bad_magic_and_version() {
    let mut bytes = sample();
    bytes[0] = b'X';
    assert!(matches!(parse_header(&bytes), Err(HearthError::BadMagic(m)) if &m == b"XGUF"));
    let mut bytes = sample();
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(parse_header(&bytes).unwrap_err(), HearthError::UnsupportedVersion(1));
}

#[test]
fn absurd_counts_do_not_allocate() {
    let mut bytes = sample();
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // metadata count
    assert_eq!(parse_header(&bytes).unwrap_err().code(), "corrupt");
    // A string claiming 2^60 bytes.
    let mut bytes = sample();
    bytes[24..32].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert_eq!(parse_header(&bytes).unwrap_err().code(), "truncated");
}

fn with_tensor(dims: Vec<u64>, ty: u32, offset: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.push(b't');
    out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in &dims {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.resize(4096, 0);
    out
}

#[test]
fn tensor_index_is_validated() {
    let code = |b: Vec<u8>| parse_header(&b).map(|_| "ok").unwrap_or_else(|e| e.code());
    assert_eq!(code(with_tensor(vec![32, 2], 8, 0)), "ok");
    assert_eq!(code(with_tensor(vec![33, 2], 8, 0)), "corrupt"); // rows not whole Q8_0 blocks
    assert_eq!(code(with_tensor(vec![32, 0], 8, 0)), "corrupt"); // zero dimension
    assert_eq!(code(with_tensor(vec![32, 2], 999, 0)), "corrupt"); // no such type
    assert_eq!(code(with_tensor(vec![32, 2], 8, 3)), "corrupt"); // misaligned
    assert_eq!(code(with_tensor(vec![1, 1, 1, 1, 1], 0, 0)), "corrupt"); // 5 dims
    assert_eq!(code(with_tensor(vec![1 << 40, 1 << 40], 0, 0)), "corrupt"); // overflowing size
    // Data announced past the end of the file.
    let b = with_tensor(vec![1 << 20], 0, 0);
    assert_eq!(parse_file(&b).unwrap_err().code(), "truncated");
}

#[test]
fn stream_delivers_each_tensor_once_whatever_the_chunking() {
    struct Collect(Vec<(String, Vec<u8>)>, bool);
    impl TensorSink for Collect {
        fn header(&mut self, _: &Header) -> crate::Result<()> {
            self.1 = true;
            Ok(())
        }
        fn tensor(&mut self, info: &TensorInfo, data: &[u8]) -> crate::Result<()> {
            self.0.push((info.name.clone(), data.to_vec()));
            Ok(())
        }
    }
    let bytes = sample();
    for chunk in [1, 3, 7, 64, bytes.len()] {
        let mut s = GgufStream::new();
        let mut sink = Collect(Vec::new(), false);
        for c in bytes.chunks(chunk) {
            s.feed(c, &mut sink).unwrap();
        }
        s.finish().unwrap();
        assert!(sink.1);
        assert_eq!(sink.0.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(sink.0[0].1, (0..32).collect::<Vec<u8>>());
        assert_eq!(sink.0[1].1, vec![7; 34]);
    }
    // Cut short: finish names the missing tensor.
    let mut s = GgufStream::new();
    let mut sink = Collect(Vec::new(), false);
    s.feed(&bytes[..bytes.len() - 40], &mut sink).unwrap();
    match s.finish() {
        Err(HearthError::Truncated { what, .. }) => assert!(what.contains("'b'"), "{what}"),
        other => panic!("{other:?}"),
    }
}

/// Pieces: whole rows, cut the same whatever the chunking (so a load never depends on how the
/// bytes arrive), the biggest no larger than asked unless one row is; skipped tensors are never
/// seen; the stream's buffer holds at most a piece, however large the tensor.
#[test]
fn stream_delivers_pieces_of_whole_rows_whatever_the_chunking() {
    #[derive(Default)]
    struct Pieces {
        log: Vec<String>,
        pieces: Vec<(String, Vec<u8>)>,
    }
    impl TensorSink for Pieces {
        fn header(&mut self, _: &Header) -> crate::Result<()> {
            Ok(())
        }
        fn begin(&mut self, info: &TensorInfo) -> crate::Result<Take> {
            self.log.push(format!("begin {}", info.name));
            Ok(match info.name.as_str() {
                "skipped" => Take::Skip,
                "whole" => Take::Whole,
                _ => Take::Pieces(100),
            })
        }
        fn tensor(&mut self, info: &TensorInfo, data: &[u8]) -> crate::Result<()> {
            self.pieces.push((info.name.clone(), data.to_vec()));
            Ok(())
        }
        fn piece(&mut self, info: &TensorInfo, data: &[u8]) -> crate::Result<()> {
            self.pieces.push((info.name.clone(), data.to_vec()));
            Ok(())
        }
        fn end(&mut self, info: &TensorInfo) -> crate::Result<()> {
            self.log.push(format!("end {}", info.name));
            Ok(())
        }
    }
    let bytes_of = |n: usize, seed: u8| (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>();
    let mut w = GgufWriter::new();
    // F32 rows of 12 bytes (8 rows in a 100-byte piece), Q8_0 rows of 2 blocks (68 bytes: one a
    // piece), a skipped tensor, an F16 row of 256 bytes (larger than a piece: one row a piece),
    // a tensor taken whole.
    w.tensor("f32", vec![3, 50], TensorType::F32, bytes_of(600, 1));
    w.tensor("q8", vec![64, 5], TensorType::Q8_0, bytes_of(340, 2));
    w.tensor("skipped", vec![64], TensorType::F32, bytes_of(256, 3));
    w.tensor("f16", vec![128, 3], TensorType::F16, bytes_of(768, 4));
    w.tensor("whole", vec![8, 40], TensorType::F32, bytes_of(1280, 5));
    let file = w.to_bytes();
    let h = parse_file(&file).unwrap();
    let mut first: Option<Pieces> = None;
    for chunk in [1, 5, 67, 100, 1000, file.len()] {
        let mut s = GgufStream::new();
        let mut sink = Pieces::default();
        for c in file.chunks(chunk) {
            s.feed(c, &mut sink).unwrap();
            assert!(s.buffered() <= 1280, "the stream holds {} bytes", s.buffered());
            assert!(s.buffered() <= 256 || s.header().is_none() || sink.log.last().is_some_and(|l| l == "begin whole"), "{} bytes of a piece", s.buffered());
        }
        s.finish().unwrap();
        for t in &h.tensors {
            let got: Vec<&[u8]> = sink.pieces.iter().filter(|p| p.0 == t.name).map(|p| p.1.as_slice()).collect();
            if t.name == "skipped" {
                assert!(got.is_empty());
                continue;
            }
            assert_eq!(got.concat(), h.tensor_bytes(&file, t), "{} in chunks of {chunk}", t.name);
            let row = t.row_bytes() as usize;
            assert!(got.iter().all(|p| p.len() % row == 0 && (p.len() <= 100 || p.len() == row || t.name == "whole")), "{}: {:?}", t.name, got.iter().map(|p| p.len()).collect::<Vec<_>>());
        }
        let sizes = |s: &Pieces| s.pieces.iter().map(|p| (p.0.clone(), p.1.len())).collect::<Vec<_>>();
        assert_eq!(sizes(&sink)[..8].iter().map(|p| p.1).collect::<Vec<_>>(), [96, 96, 96, 96, 96, 96, 24, 68]);
        assert_eq!(sink.log, ["begin f32", "end f32", "begin q8", "end q8", "begin skipped", "begin f16", "end f16", "begin whole"]);
        if let Some(f) = &first {
            assert_eq!((sizes(f), &f.log), (sizes(&sink), &sink.log), "chunks of {chunk}");
        }
        first = Some(sink);
    }
}

/// Arrays of wider numbers are kept packed too (a U16 array took 16 times its bytes as `Value`s),
/// read back through the typed getters, and written back byte for byte.
#[test]
fn number_arrays_stay_packed() {
    let scores: Vec<f32> = (0..1000).map(|i| i as f32 * -0.5).collect();
    let types: Vec<i32> = (0..1000).map(|i| i % 7 - 3).collect();
    let mut w = GgufWriter::new();
    w.meta("scores", Value::Packed { elem: 6, data: scores.iter().flat_map(|x| x.to_le_bytes()).collect() })
        .meta("shorts", Value::Array(vec![Value::I16(-2), Value::I16(3)]))
        .meta("types", Value::Array(types.iter().map(|&t| Value::I32(t)).collect()))
        .meta("wide", Value::Array(vec![Value::U64(u64::MAX), Value::U64(7)]));
    w.tensor("a", vec![4], TensorType::F32, vec![0; 16]);
    let bytes = w.to_bytes();
    let h = parse_file(&bytes).unwrap();
    for (key, elem, len) in [("scores", 6, 4000), ("types", 5, 4000), ("wide", 10, 16), ("shorts", 3, 4)] {
        match h.metadata.get(key) {
            Some(Value::Packed { elem: e, data }) => assert_eq!((*e, data.len()), (elem, len), "{key}"),
            v => panic!("{key} parsed as {v:?}"),
        }
    }
    assert_eq!(h.metadata.opt_f32s("scores").unwrap().unwrap(), scores);
    assert_eq!(h.metadata.opt_i64s("types").unwrap().unwrap(), types.iter().map(|&t| t as i64).collect::<Vec<_>>());
    assert_eq!(h.metadata.opt_i64s("shorts").unwrap().unwrap(), vec![-2, 3]);
    // u64::MAX is no i64: a typed error, not a wrap.
    assert!(matches!(h.metadata.opt_i64s("wide"), Err(HearthError::BadMetadata { .. })));
    assert_eq!(with_metadata(&bytes, &[]).unwrap(), bytes, "written back byte for byte");
}

/// A byte array is kept as its bytes (not a `Value` per element: a 17.8 MB array once peaked at
/// 1.08 GB), written back the same, and a boolean array holding other bytes is corrupt.
#[test]
fn byte_arrays_stay_bytes() {
    let n = 10_000_000;
    let mut w = GgufWriter::new();
    w.meta("blob", Value::Packed { elem: 0, data: vec![0xab; n] }).meta("flags", Value::Packed { elem: 7, data: vec![0, 1, 1] });
    w.tensor("a", vec![4], TensorType::F32, vec![0; 16]);
    let bytes = w.to_bytes();
    let h = parse_file(&bytes).unwrap();
    match h.metadata.get("blob") {
        Some(Value::Packed { elem: 0, data }) => assert!(data.len() == n && data.iter().all(|&b| b == 0xab)),
        v => panic!("blob parsed as {:?}", v.map(|v| std::mem::discriminant(v))),
    }
    assert_eq!(h.metadata.get("flags"), Some(&Value::Packed { elem: 7, data: vec![0, 1, 1] }));
    assert_eq!(with_metadata(&bytes, &[]).unwrap(), bytes, "written back byte for byte");
    let mut bad = bytes.clone();
    let at = bytes.windows(3).rposition(|x| x == [0, 1, 1]).unwrap();
    bad[at + 1] = 2;
    assert!(matches!(parse_header(&bad), Err(HearthError::Corrupt(m)) if m.contains("boolean")));
}
