// A tiny Linux VM for end-to-end tests: a distribution kernel (Debian's
// linux-image-amd64 / linux-image-cloud-amd64 put /boot/vmlinuz-<ver> and
// /lib/modules/<ver>) and an initramfs built at test time from the static
// busybox binary, an /init script, and the virtio modules the kernel needs.
// Nothing binary is committed: the archive is written into a temporary directory.
//
// EDGELAN_QEMU_KERNEL=/path/vmlinuz-<ver> picks a kernel that is not in /boot
// (for example one unpacked with `dpkg-deb -x linux-image-….deb DIR`: its modules are
// then found in DIR/lib/modules/<ver>); EDGELAN_QEMU_MODULES=/path overrides that.
import { execFileSync } from "node:child_process";
import { accessSync, constants, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { commandExists } from "./guests.ts";

/** A kernel to boot, with where its modules and build config are (when known). */
export interface Kernel {
  readonly image: string;
  /** "6.1.0-56-cloud-amd64", from the file name vmlinuz-<version>; "" when the name has no version. */
  readonly version: string;
  readonly modulesDir: string | null;
  /** Parsed /boot/config-<version>: CONFIG_NAME → "y" | "m" | …; empty when there is no config file. */
  readonly config: ReadonlyMap<string, string>;
}

/** The modules to load for a virtio-net NIC on a PCI bus, in insmod order (dependencies first). */
export interface ModulePlan {
  /** Absolute paths of the module files (possibly compressed), dependencies first. */
  readonly files: string[];
  /** Drivers that are built into the kernel (nothing to load). */
  readonly builtIn: string[];
}

/** The drivers the VM needs, with the kernel config symbol that says whether each is built in. */
const NEEDED_DRIVERS: ReadonlyArray<{ module: string; config: string }> = [
  { module: "virtio_pci", config: "CONFIG_VIRTIO_PCI" },
  { module: "virtio_net", config: "CONFIG_VIRTIO_NET" },
];

// ---- finding things ---------------------------------------------------------------

/** The static busybox to put into the initramfs, or null. */
export function findStaticBusybox(): string | null {
  for (const candidate of ["/bin/busybox", "/usr/bin/busybox", "/usr/lib/initramfs-tools/bin/busybox"]) {
    if (existsSync(candidate) && isStaticElf(candidate)) return candidate;
  }
  return null;
}

/** The kernel to boot: $EDGELAN_QEMU_KERNEL, else the newest /boot/vmlinuz-* (preferring one whose modules are installed). */
export function findKernel(): Kernel | null {
  const forced = process.env.EDGELAN_QEMU_KERNEL;
  if (forced !== undefined && forced !== "") return existsSync(forced) ? describeKernel(forced) : null;
  let names: string[];
  try {
    names = readdirSync("/boot").filter((name) => /^vmlinuz-.+/.test(name));
  } catch {
    return null;
  }
  const kernels = names
    .sort((a, b) => b.localeCompare(a, "en", { numeric: true }))
    .map((name) => describeKernel(join("/boot", name)));
  return kernels.find((kernel) => kernel.modulesDir !== null) ?? kernels[0] ?? null;
}

function describeKernel(image: string): Kernel {
  const version = /^vmlinuz-(.+)$/.exec(basename(image))?.[1] ?? "";
  const root = dirname(dirname(image)); // "/" for /boot/vmlinuz-…, DIR for DIR/boot/vmlinuz-…
  const modulesOverride = process.env.EDGELAN_QEMU_MODULES;
  const modulesCandidates = modulesOverride !== undefined && modulesOverride !== ""
    ? [modulesOverride]
    : [join(root, "lib", "modules", version), join(root, "usr", "lib", "modules", version), join("/lib/modules", version)];
  const modulesDir = version === "" && modulesOverride === undefined ? null : modulesCandidates.find((dir) => isDirectory(dir)) ?? null;
  const configFile = join(dirname(image), `config-${version}`);
  const config = new Map<string, string>();
  if (version !== "" && existsSync(configFile)) {
    for (const line of readFileSync(configFile, "utf8").split("\n")) {
      const match = /^(CONFIG_[A-Z0-9_]+)=(.*)$/.exec(line);
      if (match !== null) config.set(match[1] as string, match[2] as string);
    }
  }
  return { image, version, modulesDir, config };
}

/** Why the QEMU guest test cannot run here, or null when it can. */
export function vmSkipReason(): string | null {
  if (!commandExists("qemu-system-x86_64")) return "needs qemu-system-x86_64 (Debian: qemu-system-x86)";
  if (findStaticBusybox() === null) return "needs a static busybox (Debian: busybox-static)";
  const kernel = findKernel();
  if (kernel === null) {
    return "needs a Linux kernel image: /boot/vmlinuz-* (Debian: linux-image-cloud-amd64 or linux-image-amd64) or EDGELAN_QEMU_KERNEL=/path/to/vmlinuz";
  }
  try {
    accessSync(kernel.image, constants.R_OK);
    planModules(kernel);
  } catch (error) {
    return (error as Error).message;
  }
  return null;
}

// ---- modules -----------------------------------------------------------------------

/** Which module files virtio-net needs on this kernel (with their dependencies), and which drivers are built in. */
export function planModules(kernel: Kernel): ModulePlan {
  const index = kernel.modulesDir === null ? new Map<string, string>() : indexModules(join(kernel.modulesDir, "kernel"));
  const files: string[] = [];
  const builtIn: string[] = [];
  const visiting = new Set<string>();
  const add = (name: string): void => {
    if (visiting.has(name)) return;
    visiting.add(name);
    const file = index.get(name);
    if (file === undefined) throw new Error(`kernel module ${name} is needed but not found under ${kernel.modulesDir ?? "(no modules directory)"}`);
    for (const dependency of moduleInfo(readModule(file)).depends) add(dependency);
    files.push(file);
  };
  for (const { module, config } of NEEDED_DRIVERS) {
    const setting = kernel.config.get(config);
    const file = index.get(module);
    if (setting === "y" || (setting === undefined && file === undefined)) {
      // Built in (or, with no config to ask, not shipped as a module: assume built in; the boot will tell).
      builtIn.push(module);
    } else if (file === undefined) {
      throw new Error(`${config}=${setting} in ${kernel.image}'s config, but ${module}.ko is not under ${kernel.modulesDir ?? `/lib/modules/${kernel.version}`}: install the kernel's modules`);
    } else {
      add(module);
    }
  }
  return { files, builtIn };
}

/** module name ("virtio_net") → its file, for every .ko, .ko.xz, .ko.zst, .ko.gz under `dir`. */
function indexModules(dir: string): Map<string, string> {
  const index = new Map<string, string>();
  const walk = (at: string): void => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (/\.ko(\.(xz|zst|gz))?$/.test(entry.name)) index.set(moduleName(entry.name), path);
    }
  };
  if (isDirectory(dir)) walk(dir);
  return index;
}

/** "virtio-net.ko.xz" → "virtio_net" (the kernel treats - and _ alike in module names). */
function moduleName(file: string): string {
  return file.replace(/\.ko(\.(xz|zst|gz))?$/, "").replaceAll("-", "_");
}

/** A module file's ELF bytes, decompressing .xz (xz), .zst (zstd) or .gz as needed. */
export function readModule(file: string): Buffer {
  if (file.endsWith(".ko")) return readFileSync(file);
  if (file.endsWith(".gz")) return gunzipSync(readFileSync(file));
  const tool = file.endsWith(".xz") ? "xz" : "zstd";
  if (!commandExists(tool)) throw new Error(`${file} is compressed: needs \`${tool}\` to unpack it`);
  return execFileSync(tool, ["-dc", file], { maxBuffer: 64 * 1024 * 1024 });
}

/** The `name` and `depends` of a module, from its ELF .modinfo section (what `modinfo -F depends` prints). */
export function moduleInfo(elf: Buffer): { name: string | null; depends: string[] } {
  const section = elfSection(elf, ".modinfo");
  if (section === null) throw new Error("not a kernel module: no .modinfo section");
  const fields = new Map<string, string>();
  for (const entry of section.toString("latin1").split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0 && !fields.has(entry.slice(0, eq))) fields.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  const depends = (fields.get("depends") ?? "").split(",").filter((name) => name !== "").map((name) => name.replaceAll("-", "_"));
  return { name: fields.get("name") ?? null, depends };
}

// ---- ELF ---------------------------------------------------------------------------

function checkElf64(elf: Buffer): void {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) {
    throw new Error("not a 64-bit little-endian ELF file");
  }
}

/** The bytes of a named section of a 64-bit little-endian ELF file, or null. */
function elfSection(elf: Buffer, wanted: string): Buffer | null {
  checkElf64(elf);
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  const header = (index: number): { name: number; offset: number; size: number } => {
    const at = shoff + index * shentsize;
    return { name: elf.readUInt32LE(at), offset: Number(elf.readBigUInt64LE(at + 0x18)), size: Number(elf.readBigUInt64LE(at + 0x20)) };
  };
  const names = header(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const section = header(i);
    const start = names.offset + section.name;
    const end = elf.indexOf(0, start);
    if (elf.toString("latin1", start, end) === wanted) return elf.subarray(section.offset, section.offset + section.size);
  }
  return null;
}

/** Whether an ELF executable is statically linked (has no PT_INTERP program header). */
export function isStaticElf(path: string): boolean {
  let elf: Buffer;
  try {
    elf = readFileSync(path);
    checkElf64(elf);
  } catch {
    return false;
  }
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    if (elf.readUInt32LE(phoff + i * phentsize) === 3 /* PT_INTERP */) return false;
  }
  return true;
}

// ---- the initramfs -----------------------------------------------------------------

/** One entry of a newc cpio archive. */
export type CpioEntry =
  | { type: "dir"; path: string; mode?: number }
  | { type: "file"; path: string; data: Uint8Array; mode?: number }
  | { type: "symlink"; path: string; target: string }
  | { type: "chardev"; path: string; major: number; minor: number; mode?: number };

/** A cpio archive in the "newc" format the kernel unpacks as an initramfs (what `cpio -o -H newc` writes). */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let length = 0;
  const push = (buffer: Buffer): void => {
    parts.push(buffer);
    length += buffer.length;
  };
  const pad = (): void => {
    if (length % 4 !== 0) push(Buffer.alloc(4 - (length % 4)));
  };
  const record = (path: string, mode: number, data: Uint8Array, ino: number, rdev: [number, number] = [0, 0]): void => {
    const name = Buffer.from(`${path}\0`);
    const fields = [ino, mode, 0, 0, (mode & 0o170000) === 0o040000 ? 2 : 1, 0, data.length, 0, 0, rdev[0], rdev[1], name.length, 0];
    push(Buffer.from(`070701${fields.map((n) => n.toString(16).padStart(8, "0").toUpperCase()).join("")}`, "latin1"));
    push(name);
    pad();
    push(Buffer.from(data));
    pad();
  };
  entries.forEach((entry, i) => {
    const path = entry.path.replace(/^\/+/, "");
    switch (entry.type) {
      case "dir": record(path, 0o040000 | (entry.mode ?? 0o755), new Uint8Array(0), i + 1); break;
      case "file": record(path, 0o100000 | (entry.mode ?? 0o644), entry.data, i + 1); break;
      case "symlink": record(path, 0o120777, Buffer.from(entry.target), i + 1); break;
      case "chardev": record(path, 0o020000 | (entry.mode ?? 0o600), new Uint8Array(0), i + 1, [entry.major, entry.minor]); break;
    }
  });
  record("TRAILER!!!", 0, new Uint8Array(0), 0);
  // The kernel reads the archive in 512-byte blocks, as cpio writes it.
  if (length % 512 !== 0) push(Buffer.alloc(512 - (length % 512)));
  return Buffer.concat(parts, length);
}

export interface BuiltImage {
  readonly kernel: string;
  readonly initrd: string;
  /** Module file names put into /lib/modules/ of the initramfs, in load order. */
  readonly modules: string[];
  readonly builtIn: string[];
}

/**
 * Writes `dir/initramfs.cpio.gz`: /bin/busybox, the virtio-net modules as
 * /lib/modules/NN-name.ko (uncompressed, so busybox insmod can load them), and
 * `/init` = `initScript`. The script starts with `/bin/busybox --install -s`
 * having been run, so applets are on PATH, and it may run `load_modules` (a
 * shell function that insmods everything in order) or `boot_eth0` (prints the
 * "EDGELAN-VM: booted" line, loads the modules, waits up to 10 s for eth0 and
 * sets lo and eth0 up).
 */
export function buildImage(dir: string, initScript: string): BuiltImage {
  const kernel = findKernel();
  const busybox = findStaticBusybox();
  if (kernel === null || busybox === null) throw new Error(vmSkipReason() ?? "no kernel or busybox");
  const plan = planModules(kernel);
  const moduleEntries: CpioEntry[] = plan.files.map((file, i) => ({
    type: "file", path: `lib/modules/${String(i).padStart(2, "0")}-${moduleName(basename(file))}.ko`, data: readModule(file),
  }));
  const prelude = [
    "#!/bin/busybox sh",
    "/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin",
    "/bin/busybox --install -s",
    "export PATH=/bin:/sbin:/usr/bin:/usr/sbin",
    "mount -t proc proc /proc",
    "mount -t sysfs sysfs /sys",
    "mount -t devtmpfs devtmpfs /dev 2>/dev/null",
    "exec </dev/console >/dev/console 2>&1",
    "load_modules() {",
    "  for m in /lib/modules/*.ko; do [ -e \"$m\" ] || continue; insmod \"$m\" || echo \"insmod $m failed\"; done",
    "}",
    "boot_eth0() {",
    "  echo \"EDGELAN-VM: booted $(uname -r)\"",
    "  load_modules",
    "  i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do usleep 100000; i=$((i+1)); done",
    "  ip link set lo up",
    "  ip link set eth0 up",
    "}",
    "",
  ].join("\n");
  const archive = cpioNewc([
    { type: "dir", path: "bin" }, { type: "dir", path: "dev" }, { type: "dir", path: "lib" }, { type: "dir", path: "lib/modules" },
    { type: "chardev", path: "dev/console", major: 5, minor: 1 },
    { type: "file", path: "bin/busybox", data: readFileSync(busybox), mode: 0o755 },
    ...moduleEntries,
    { type: "file", path: "init", data: Buffer.from(prelude + initScript), mode: 0o755 },
  ]);
  const initrd = join(dir, "initramfs.cpio.gz");
  writeFileSync(initrd, gzipSync(archive, { level: 6 }));
  return { kernel: kernel.image, initrd, modules: moduleEntries.map((entry) => basename(entry.path)), builtIn: plan.builtIn };
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
