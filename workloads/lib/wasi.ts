// The few WASI preview1 calls the built-in workloads need, declared directly (AssemblyScript 0.28 ships no WASI
// bindings). scripts/build-workloads.ts compiles this folder into every workload.
// Everything here is allocation-light: the stub runtime never frees.

@external("wasi_snapshot_preview1", "args_sizes_get")
declare function args_sizes_get(argc: usize, argvBufSize: usize): u16
@external("wasi_snapshot_preview1", "args_get")
declare function args_get(argv: usize, argvBuf: usize): u16
@external("wasi_snapshot_preview1", "path_open")
declare function path_open(fd: u32, dirflags: u32, path: usize, pathLen: usize, oflags: u16, rightsBase: u64, rightsInheriting: u64, fdflags: u16, opened: usize): u16
@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovsLen: usize, written: usize): u16
@external("wasi_snapshot_preview1", "fd_read")
declare function fd_read(fd: u32, iovs: usize, iovsLen: usize, read: usize): u16
@external("wasi_snapshot_preview1", "fd_close")
declare function fd_close(fd: u32): u16
@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(code: u32): void

/** The preopened directory: the task's root, seen as '/'. */
const ROOT_FD: u32 = 3
const OFLAGS_CREAT_TRUNC: u16 = 1 | 8
const RIGHT_FD_WRITE: u64 = 1 << 6
const RIGHT_FD_READ: u64 = 1 << 1

const scratch = memory.data(32)

export function readArgs(): string[] {
  args_sizes_get(scratch, scratch + 4)
  const argc = load<u32>(scratch)
  const pointers = heap.alloc(argc * 4)
  const buffer = heap.alloc(load<u32>(scratch + 4))
  args_get(pointers, buffer)
  const args = new Array<string>()
  for (let i: u32 = 0; i < argc; i++) {
    const start = load<u32>(pointers + i * 4)
    let end = start
    while (load<u8>(end) != 0) end++
    args.push(String.UTF8.decodeUnsafe(start, end - start))
  }
  return args
}

/** Writes all bytes, looping over short writes. Returns a WASI errno (0 on success). */
export function writeAll(fd: u32, pointer: usize, length: usize): u16 {
  while (length > 0) {
    store<u32>(scratch, <u32>pointer)
    store<u32>(scratch + 4, <u32>length)
    const errno = fd_write(fd, scratch, 1, scratch + 8)
    if (errno != 0) return errno
    const written = <usize>load<u32>(scratch + 8)
    pointer += written
    length -= written
  }
  return 0
}

export function printLine(fd: u32, text: string): void {
  const bytes = String.UTF8.encode(text + "\n")
  writeAll(fd, changetype<usize>(bytes), bytes.byteLength)
}

/** Creates or truncates `path` (absolute paths are taken relative to the root, as wasi-libc does) and writes it. */
export function writeFile(path: string, pointer: usize, length: usize): u16 {
  let start = 0
  while (start < path.length && path.charCodeAt(start) == 47) start++ // '/'
  const bytes = String.UTF8.encode(path.substring(start))
  const errno = path_open(ROOT_FD, 0, changetype<usize>(bytes), bytes.byteLength, OFLAGS_CREAT_TRUNC, RIGHT_FD_WRITE, 0, 0, scratch + 16)
  if (errno != 0) return errno
  const fd = load<u32>(scratch + 16)
  const writeErrno = writeAll(fd, pointer, length)
  const closeErrno = fd_close(fd)
  return writeErrno != 0 ? writeErrno : closeErrno
}

/** Opens `path` (relative to the root, as in writeFile) for reading; returns the fd, or -errno. */
function openForRead(path: string): i32 {
  let start = 0
  while (start < path.length && path.charCodeAt(start) == 47) start++ // '/'
  const bytes = String.UTF8.encode(path.substring(start))
  const errno = path_open(ROOT_FD, 0, changetype<usize>(bytes), bytes.byteLength, 0, RIGHT_FD_READ, 0, 0, scratch + 16)
  if (errno != 0) return -(<i32>errno)
  return <i32>load<u32>(scratch + 16)
}

/** Reads a whole file; null when it cannot be opened or read (the errno is in lastErrno). */
export let lastErrno: u16 = 0
export function readFile(path: string): Uint8Array | null {
  const fd = openForRead(path)
  if (fd < 0) {
    lastErrno = <u16>(-fd)
    return null
  }
  let data = new Uint8Array(64 * 1024)
  let length = 0
  while (true) {
    if (length == data.length) {
      const bigger = new Uint8Array(data.length * 2)
      bigger.set(data)
      data = bigger
    }
    store<u32>(scratch, <u32>(changetype<usize>(data.buffer) + <usize>length))
    store<u32>(scratch + 4, <u32>(data.length - length))
    const errno = fd_read(<u32>fd, scratch, 1, scratch + 8)
    if (errno != 0) {
      lastErrno = errno
      fd_close(<u32>fd)
      return null
    }
    const got = <i32>load<u32>(scratch + 8)
    if (got == 0) break
    length += got
  }
  fd_close(<u32>fd)
  return data.subarray(0, length)
}

export function exit(code: u32): void {
  proc_exit(code)
}
