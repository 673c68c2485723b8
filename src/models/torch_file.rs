//! Files of Python's `torch.save` (the zip format of PyTorch ≥ 1.6: `.pt`, `.pth`, Lightning's
//! `.ckpt`) read without Python. The archive's `data.pkl` is run by a small interpreter of the
//! pickle opcodes `torch.save` writes (protocol 2, and the protocol-4 ones a re-pickled file may
//! use); each tensor is rebuilt from its storage (`data/<key>`) as
//! `torch._utils._rebuild_tensor_v2` does: a 1-D storage of the pickled dtype, viewed with the
//! pickled offset, size and stride. A class the interpreter does not know (a Lightning
//! checkpoint's hyper-parameters, an optimiser's state) becomes an opaque value instead of an
//! error, so the state dict beside it is still read. libtorch's own unpickler cannot serve here:
//! it reads `collections.OrderedDict`, the type of every `state_dict()`, as None.
use crate::error::Error;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;
use tch::{Kind, Tensor};

/// A pickled value, as far as a state dict needs it. Dicts are shared and mutable: the pickle
/// memo refers to them, and SETITEMS fills them after they were memoised.
#[derive(Clone)]
enum Value {
    Int(i64),
    Str(Rc<str>),
    Tuple(Rc<Vec<Value>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Rc<str>, Rc<str>),
    Storage(Rc<Storage>),
    Tensor(Rc<Tensor>),
    /// A value no state dict needs read: None, a boolean, a float, bytes, a list, an instance of a
    /// class the interpreter does not rebuild.
    Other,
    Mark,
}

struct Storage {
    kind: Kind,
    key: String,
    numel: i64,
}

/// The storage types `torch.save` names (`torch.FloatStorage`, …) and their dtypes.
const STORAGE_KINDS: [(&str, Kind); 11] = [
    ("FloatStorage", Kind::Float),
    ("DoubleStorage", Kind::Double),
    ("HalfStorage", Kind::Half),
    ("BFloat16Storage", Kind::BFloat16),
    ("LongStorage", Kind::Int64),
    ("IntStorage", Kind::Int),
    ("ShortStorage", Kind::Int16),
    ("CharStorage", Kind::Int8),
    ("ByteStorage", Kind::Uint8),
    ("BoolStorage", Kind::Bool),
    ("ComplexFloatStorage", Kind::ComplexFloat),
];

/// Nesting of dictionaries followed when collecting tensors (a memo cycle must not recurse forever).
const MAX_DEPTH: usize = 64;

/// Every tensor in a `torch.save` file, with the dotted path of the string dictionary keys that
/// lead to it (`state_dict.backbone.conv1.weight`); tensors inside lists, tuples or objects are not
/// collected. Tensors come back contiguous, on the CPU, in their saved dtype.
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, Error> {
    let err = |problem: String| Error::data(path, problem);
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| err(format!("not a zip-format torch.save file ({e}); files in the format before PyTorch 1.6 must be saved again with a current torch, or as safetensors")))?;
    let names: Vec<String> = archive.file_names().map(String::from).collect();
    let pkl = names.iter().filter(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1).min().cloned().ok_or_else(|| err("holds no `<archive>/data.pkl`: not a torch.save file".into()))?;
    let root = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
    if names.contains(&format!("{root}byteorder")) && entry(&mut archive, &format!("{root}byteorder")).map_err(err)?.trim_ascii() != b"little" {
        return Err(err("stores big-endian tensors; only little-endian files are read".into()));
    }
    let program = entry(&mut archive, &pkl).map_err(err)?;
    let mut storages: HashMap<String, Rc<Tensor>> = HashMap::new();
    let mut load = |s: &Storage| -> Result<Rc<Tensor>, String> {
        if let Some(t) = storages.get(&s.key) {
            return Ok(t.clone());
        }
        let bytes = entry(&mut archive, &format!("{root}data/{}", s.key))?;
        let need = s.numel.checked_mul(s.kind.elt_size_in_bytes() as i64).filter(|n| *n >= 0).ok_or("a storage of impossible size")?;
        if (bytes.len() as i64) < need {
            return Err(format!("storage `{}` holds {} bytes, its {} elements need {need}", s.key, bytes.len(), s.numel));
        }
        let t = Rc::new(Tensor::f_from_data_size(&bytes[..need as usize], &[s.numel], s.kind).map_err(|e| e.to_string())?);
        storages.insert(s.key.clone(), t.clone());
        Ok(t)
    };
    let value = unpickle(&program, &mut load).map_err(|e| err(format!("{pkl}: {e}")))?;
    let mut out = Vec::new();
    collect(&value, "", 0, &mut out);
    Ok(out)
}

/// The bytes of the archive's entry `name`.
fn entry(archive: &mut zip::ZipArchive<std::fs::File>, name: &str) -> Result<Vec<u8>, String> {
    let mut f = archive.by_name(name).map_err(|e| format!("`{name}`: {e}"))?;
    let mut bytes = Vec::with_capacity(f.size().min(1 << 26) as usize);
    f.read_to_end(&mut bytes).map_err(|e| format!("`{name}`: {e}"))?;
    Ok(bytes)
}

fn collect(v: &Value, path: &str, depth: usize, out: &mut Vec<(String, Tensor)>) {
    match v {
        Value::Tensor(t) => out.push((path.to_string(), t.shallow_clone())),
        Value::Dict(d) if depth < MAX_DEPTH => {
            for (k, v) in d.borrow().iter() {
                if let Value::Str(k) = k {
                    collect(v, &if path.is_empty() { k.to_string() } else { format!("{path}.{k}") }, depth + 1, out);
                }
            }
        }
        _ => {}
    }
}

/// Reads the pickle program and returns the value it leaves (what STOP pops).
fn unpickle(p: &[u8], load: &mut dyn FnMut(&Storage) -> Result<Rc<Tensor>, String>) -> Result<Value, String> {
    let mut at = 0usize;
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u64, Value> = HashMap::new();
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = at.checked_add(n).filter(|e| *e <= p.len()).ok_or_else(|| format!("truncated at byte {at}"))?;
        let s = &p[*at..end];
        *at = end;
        Ok(s)
    };
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |acc, x| (acc << 8) | *x as u64);
    let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| "pop from an empty stack".to_string());
    // the values above the topmost MARK, the MARK removed
    let pop_mark = |stack: &mut Vec<Value>| -> Result<Vec<Value>, String> {
        let m = stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or("no MARK on the stack")?;
        let items = stack.split_off(m + 1);
        stack.pop();
        Ok(items)
    };
    let string = |b: &[u8]| -> Result<Value, String> { Ok(Value::Str(std::str::from_utf8(b).map_err(|_| "a string that is not UTF-8")?.into())) };
    loop {
        let op = *take(&mut at, 1)?.first().expect("one byte");
        match op {
            0x80 => {
                take(&mut at, 1)?; // PROTO
            }
            0x95 => {
                take(&mut at, 8)?; // FRAME
            }
            b'.' => return pop(&mut stack), // STOP
            b'(' => stack.push(Value::Mark),
            b'}' => stack.push(Value::Dict(Default::default())),
            b')' => stack.push(Value::Tuple(Rc::new(vec![]))),
            b']' | b'N' | 0x88 | 0x89 => stack.push(Value::Other), // empty list, None, True, False
            b'J' => stack.push(Value::Int(le(take(&mut at, 4)?) as u32 as i32 as i64)),
            b'K' => stack.push(Value::Int(le(take(&mut at, 1)?) as i64)),
            b'M' => stack.push(Value::Int(le(take(&mut at, 2)?) as i64)),
            0x8a => {
                // LONG1: n little-endian two's-complement bytes
                let n = le(take(&mut at, 1)?) as usize;
                let b = take(&mut at, n)?;
                if n > 8 {
                    return Err(format!("an integer of {n} bytes at byte {at}"));
                }
                let v = if n == 0 { 0 } else { (le(b) << (64 - 8 * n)) as i64 >> (64 - 8 * n) };
                stack.push(Value::Int(v));
            }
            b'G' => {
                take(&mut at, 8)?;
                stack.push(Value::Other);
            }
            // (BIN|SHORT_BIN)UNICODE(8) and (SHORT_)BINBYTES(8): a length of 4, 1 or 8 bytes, then the data
            b'X' | 0x8c | 0x8d | b'B' | b'C' | 0x8e => {
                let width = match op {
                    b'X' | b'B' => 4,
                    0x8c | b'C' => 1,
                    _ => 8,
                };
                let n = le(take(&mut at, width)?) as usize;
                let data = take(&mut at, n)?;
                stack.push(if matches!(op, b'X' | 0x8c | 0x8d) { string(data)? } else { Value::Other });
            }
            b'c' => {
                // GLOBAL: "module\nname\n"
                let line = |at: &mut usize| -> Result<Rc<str>, String> {
                    let rest = &p[*at..];
                    let n = rest.iter().position(|b| *b == b'\n').ok_or("GLOBAL without a newline")?;
                    let s = std::str::from_utf8(&rest[..n]).map_err(|_| "GLOBAL name not UTF-8")?.into();
                    *at += n + 1;
                    Ok(s)
                };
                let module = line(&mut at)?;
                let name = line(&mut at)?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                // STACK_GLOBAL
                let (name, module) = (pop(&mut stack)?, pop(&mut stack)?);
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => return Err("STACK_GLOBAL of non-strings".into()),
                }
            }
            b'q' => {
                let k = le(take(&mut at, 1)?);
                memo.insert(k, stack.last().ok_or("BINPUT on an empty stack")?.clone());
            }
            b'r' => {
                let k = le(take(&mut at, 4)?);
                memo.insert(k, stack.last().ok_or("LONG_BINPUT on an empty stack")?.clone());
            }
            0x94 => {
                let k = memo.len() as u64;
                memo.insert(k, stack.last().ok_or("MEMOIZE on an empty stack")?.clone());
            }
            b'h' | b'j' => {
                let k = le(take(&mut at, if op == b'h' { 1 } else { 4 })?);
                stack.push(memo.get(&k).cloned().ok_or_else(|| format!("memo {k} read before it was written"))?);
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(Rc::new(items)));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(format!("TUPLE{n} with {} values on the stack", stack.len()));
                }
                let items = stack.split_off(stack.len() - n);
                if items.iter().any(|v| matches!(v, Value::Mark)) {
                    return Err("a MARK inside a tuple".into());
                }
                stack.push(Value::Tuple(Rc::new(items)));
            }
            b'l' => {
                pop_mark(&mut stack)?;
                stack.push(Value::Other);
            }
            b'd' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Dict(Rc::new(RefCell::new(pairs(items)?))));
            }
            // APPEND, APPENDS: into a list, which is not read
            b'a' => {
                pop(&mut stack)?;
            }
            b'e' => {
                pop_mark(&mut stack)?;
            }
            b's' => {
                let (v, k) = (pop(&mut stack)?, pop(&mut stack)?);
                if let Some(Value::Dict(d)) = stack.last() {
                    d.borrow_mut().push((k, v));
                }
            }
            b'u' => {
                let items = pairs(pop_mark(&mut stack)?)?;
                if let Some(Value::Dict(d)) = stack.last() {
                    d.borrow_mut().extend(items);
                }
            }
            b'0' => {
                pop(&mut stack)?;
            }
            b'1' => {
                pop_mark(&mut stack)?;
            }
            b'2' => stack.push(stack.last().ok_or("DUP on an empty stack")?.clone()),
            b'Q' => {
                // BINPERSID: ('storage', torch.<Kind>Storage, key, location, numel)
                let pid = pop(&mut stack)?;
                stack.push(Value::Storage(Rc::new(storage(&pid)?)));
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(reduce(&callable, &args, load)?);
            }
            b'b' => {
                pop(&mut stack)?; // BUILD: the state of the object below; a dict keeps its items
                stack.last().ok_or("BUILD on an empty stack")?;
            }
            0x81 => {
                pop(&mut stack)?; // NEWOBJ: args, class
                pop(&mut stack)?;
                stack.push(Value::Other);
            }
            0x92 => {
                pop(&mut stack)?; // NEWOBJ_EX: kwargs, args, class
                pop(&mut stack)?;
                pop(&mut stack)?;
                stack.push(Value::Other);
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {}", at - 1)),
        }
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if items.len() % 2 != 0 {
        return Err("an odd number of dictionary items".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn storage(pid: &Value) -> Result<Storage, String> {
    let Value::Tuple(t) = pid else { return Err("a persistent id that is not a tuple".into()) };
    match t.as_slice() {
        [Value::Str(tag), Value::Global(_, class), Value::Str(key), _, Value::Int(numel)] if &**tag == "storage" => {
            let kind = STORAGE_KINDS.iter().find(|(n, _)| *n == &**class).map(|(_, k)| *k).ok_or_else(|| format!("storage type `{class}` is not read"))?;
            if *numel < 0 {
                return Err(format!("storage `{key}` of {numel} elements"));
            }
            Ok(Storage { kind, key: key.to_string(), numel: *numel })
        }
        _ => Err("a persistent id that is not ('storage', type, key, location, size)".into()),
    }
}

fn ints(v: &Value, what: &str) -> Result<Vec<i64>, String> {
    let Value::Tuple(t) = v else { return Err(format!("{what} is not a tuple")) };
    t.iter().map(|x| if let Value::Int(i) = x { Ok(*i) } else { Err(format!("{what} holds a non-integer")) }).collect()
}

/// REDUCE: the callables a state dict needs are rebuilt, any other gives an opaque value.
fn reduce(callable: &Value, args: &Value, load: &mut dyn FnMut(&Storage) -> Result<Rc<Tensor>, String>) -> Result<Value, String> {
    let Value::Global(module, name) = callable else { return Ok(Value::Other) };
    let args: &[Value] = match args {
        Value::Tuple(t) => t,
        _ => return Ok(Value::Other),
    };
    match (&**module, &**name) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Default::default())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let [Value::Storage(s), Value::Int(offset), size, stride, ..] = args else { return Err("_rebuild_tensor_v2 with unexpected arguments".into()) };
            let (size, stride) = (ints(size, "a tensor's size")?, ints(stride, "a tensor's stride")?);
            if size.len() != stride.len() || size.iter().chain(&stride).any(|x| *x < 0) || *offset < 0 {
                return Err(format!("a tensor of size {size:?}, stride {stride:?}, offset {offset}"));
            }
            let numel = size.iter().try_fold(1i64, |a, b| a.checked_mul(*b)).ok_or("a tensor of impossible size")?;
            if numel > 0 {
                let last = size.iter().zip(&stride).try_fold(*offset, |a, (n, s)| (n - 1).checked_mul(*s).and_then(|x| a.checked_add(x))).ok_or("a tensor of impossible extent")?;
                if last >= s.numel {
                    return Err(format!("a tensor of size {size:?} and stride {stride:?} at offset {offset} reaches past its storage of {} elements", s.numel));
                }
            }
            let base = load(s)?;
            let t = if numel == 0 { Tensor::zeros(&size, (s.kind, tch::Device::Cpu)) } else { base.f_as_strided(&size, &stride, *offset).map_err(|e| e.to_string())?.contiguous() };
            Ok(Value::Tensor(Rc::new(t)))
        }
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => match args.first() {
            Some(Value::Tensor(t)) => Ok(Value::Tensor(t.clone())),
            _ => Err("_rebuild_parameter without a tensor".into()),
        },
        _ => Ok(Value::Other),
    }
}
