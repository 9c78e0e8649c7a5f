# The Python side of the `python.call` kernel (src/kernels/python.rs), and the one owner of
# how a Python value is turned into a task result's bytes: the `rdask` package executes
# this same source to encode and decode results, so both ends cannot drift apart.
#
# A worker runs it as `python -c SOURCE`: a long-lived interpreter that reads requests on
# its standard input and writes replies on its standard output, one at a time.
#   request: u32 nparts, then nparts x (u64 length, bytes); part 0 is the call, the rest are
#            the task's inputs (results of the futures it depends on), in order.
#   call:    u64 length of the function's pickle, the function's pickle (cloudpickle; the
#            same bytes for every task of one `map`, so it is unpickled once), then the
#            pickle of (args, kwargs) whose futures are persistent ids: input numbers.
#   reply:   u8 status (0: result, 1: error), u64 length, bytes: the encoded result, or the
#            error's text (ending with a marker line carrying the pickled exception).
# It must run on Python 3.9+ and needs nothing but the standard library, except cloudpickle
# for functions pickled by value (lambdas, closures, functions defined in __main__).

import io
import os
import pickle
import struct
import sys

MAGIC = b"RDP1"
READY = b"RDR1"
ALIGN = 64
# The marker line of an error text: base64 of the pickled exception follows it.
EXCEPTION_MARKER = "rdask-pickled-exception:"
_HEAD = struct.Struct("<4sIQ")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _pad(n):
    return (-n) % ALIGN


def dumps(value):
    """A value as (header, pickle, buffers): pickle protocol 5 with out-of-band buffers, so
    NumPy arrays are written from their own memory, not copied into the pickle. The encoded
    bytes are the concatenation of the returned pieces and the padding between them."""
    buffers = []
    try:
        data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception:
        # Lambdas, closures and classes of __main__ are pickled by value.
        import cloudpickle

        buffers = []
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    head = bytearray(_HEAD.pack(MAGIC, len(raws), len(data)))
    for r in raws:
        head += _U64.pack(r.nbytes)
    head += bytes(_pad(len(head) + len(data)))
    return head, data, raws


def encoded_pieces(value):
    """The pieces to write, in order, whose concatenation is the encoded value."""
    head, data, raws = dumps(value)
    pieces = [head, data]
    for r in raws:
        pieces.append(r)
        pad = _pad(r.nbytes)
        if pad:
            pieces.append(bytes(pad))
    return pieces


def encode(value):
    """The encoded value as one bytes object."""
    return b"".join(encoded_pieces(value))


def decode(buf):
    """The value of encoded bytes. Its out-of-band buffers are views of `buf` (a bytearray
    gives writable NumPy arrays), not copies."""
    view = memoryview(buf)
    magic, nbuf, plen = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise ValueError("not an rdask Python result (this task's result is raw bytes)")
    pos = _HEAD.size
    sizes = [_U64.unpack_from(view, pos + 8 * i)[0] for i in range(nbuf)]
    pos += 8 * nbuf
    pos += _pad(pos + plen)
    data = view[pos : pos + plen]
    pos += plen
    buffers = []
    for n in sizes:
        buffers.append(view[pos : pos + n])
        pos += n + _pad(n)
    return pickle.loads(data, buffers=buffers)


class _CallUnpickler(pickle.Unpickler):
    """Unpickles (args, kwargs) with each dependency (a persistent id: its input number)
    replaced by the decoded result of that input."""

    def __init__(self, file, inputs):
        super().__init__(file)
        self._inputs = inputs
        self._decoded = {}

    def persistent_load(self, pid):
        i = int(pid)
        if i not in self._decoded:
            self._decoded[i] = decode(self._inputs[i])
        return self._decoded[i]


def _read_exact(stream, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            raise EOFError
        got += k
    return buf


class _MissingModule(Exception):
    pass


_functions = {}


def _function(blob):
    fn = _functions.get(blob)
    if fn is None:
        fn = pickle.loads(blob)
        if len(_functions) >= 64:
            _functions.clear()
        _functions[bytes(blob)] = fn
    return fn


def _call(parts):
    call = parts[0]
    (flen,) = _U64.unpack_from(call, 0)
    try:
        fn = _function(bytes(call[8 : 8 + flen]))
        args, kwargs = _CallUnpickler(io.BytesIO(call[8 + flen :]), parts[1:]).load()
    except ImportError as e:
        raise _MissingModule(e) from e
    return fn(*args, **kwargs)


def _error_text(exc):
    import base64
    import traceback

    if isinstance(exc, _MissingModule):
        inner = exc.args[0]
        name = getattr(inner, "name", None) or str(inner)
        text = (
            "the worker's Python (%s) cannot import %r, which this task needs: %s. Install it "
            "in that environment, or give the worker a Python that has it (worker --python "
            "PATH, or RDASK_WORKER_PYTHON)" % (sys.executable, name, inner)
        )
        exc = inner
    else:
        # Skip the runner's own frames (its code is `python -c`'s "<string>"): the user's
        # frames are what tell.
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        blob = base64.b64encode(pickle.dumps(exc, protocol=4)).decode("ascii")
        text += "\n" + EXCEPTION_MARKER + blob
    except Exception:
        pass
    return text


def main():
    # The protocol owns the original stdin and stdout; a task's print() goes to stderr (the
    # worker's log) and its input() reads /dev/null.
    # Buffered: a request's small header reads come from one system call.
    proto_in = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    sys.stdout = sys.stderr
    proto_out.write(READY)
    while True:
        try:
            (nparts,) = _U32.unpack(_read_exact(proto_in, 4))
            parts = []
            for _ in range(nparts):
                (n,) = _U64.unpack(_read_exact(proto_in, 8))
                parts.append(_read_exact(proto_in, n))
        except EOFError:
            return
        try:
            pieces = encoded_pieces(_call(parts))
            status = 0
        except BaseException as e:  # noqa: B902 - SystemExit in a task is the task's error
            pieces = [_error_text(e).encode("utf-8", "replace")]
            status = 1
        del parts
        total = sum(memoryview(p).nbytes for p in pieces)
        head = bytes([status]) + _U64.pack(total)
        if total <= 1 << 16:
            # A small reply in one write (one system call per task).
            out = [head + b"".join(pieces)]
        else:
            out = [head] + pieces
        for p in out:
            view = memoryview(p).cast("B")
            while len(view):
                view = view[proto_out.write(view) :]
        del pieces, out


if __name__ == "__main__":
    main()
