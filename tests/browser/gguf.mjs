// GGUF files in node for the browser tests: parse one into its parts (metadata entries kept as
// their raw bytes), write parts back; the tests edit the parts in between.

const SCALAR_BYTES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
export const T_STRING = 8;
export const T_ARRAY = 9;

/** {version, kvs: [{key, type, raw}], tensors: [{name, dims, type, offset}], alignment, data}. */
export function parseGguf(buf) {
  let p = 4;
  const u32 = () => ((p += 4), buf.readUInt32LE(p - 4));
  const u64 = () => ((p += 8), buf.readBigUInt64LE(p - 8));
  const bytes = () => {
    const n = Number(u64());
    p += n;
    return buf.subarray(p - n, p);
  };
  const skip = (type) => {
    if (type === T_STRING) return bytes();
    if (type === T_ARRAY) {
      const et = u32();
      const n = Number(u64());
      if (et === T_STRING) for (let i = 0; i < n; i++) bytes();
      else p += n * SCALAR_BYTES[et];
      return;
    }
    p += SCALAR_BYTES[type];
  };
  const version = u32();
  const nTensors = Number(u64());
  const nKv = Number(u64());
  const kvs = [];
  let alignment = 32;
  for (let i = 0; i < nKv; i++) {
    const key = bytes().toString("utf8");
    const type = u32();
    const at = p;
    skip(type);
    kvs.push({ key, type, raw: buf.subarray(at, p) });
    if (key === "general.alignment") alignment = buf.readUInt32LE(at);
  }
  const tensors = [];
  for (let i = 0; i < nTensors; i++) {
    const name = Buffer.from(bytes());
    const nd = u32();
    const dims = [];
    for (let j = 0; j < nd; j++) dims.push(u64());
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const dataStart = Math.ceil(p / alignment) * alignment;
  return { version, kvs, tensors, alignment, data: buf.subarray(dataStart) };
}

export function writeGguf({ version, kvs, tensors, alignment, data }) {
  const parts = [];
  const u32 = (v) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    parts.push(b);
  };
  const u64 = (v) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    parts.push(b);
  };
  const str = (s) => {
    const b = Buffer.from(s);
    u64(b.length);
    parts.push(b);
  };
  parts.push(Buffer.from("GGUF"));
  u32(version);
  u64(tensors.length);
  u64(kvs.length);
  for (const kv of kvs) {
    str(kv.key);
    u32(kv.type);
    parts.push(kv.raw);
  }
  for (const t of tensors) {
    str(t.name);
    u32(t.dims.length);
    for (const d of t.dims) u64(d);
    u32(t.type);
    u64(t.offset);
  }
  const head = parts.reduce((n, b) => n + b.length, 0);
  parts.push(Buffer.alloc(Math.ceil(head / alignment) * alignment - head));
  parts.push(data);
  return Buffer.concat(parts);
}
