// In-memory stand-in for the parts of the Origin Private File System and StorageManager that
// web/store.js uses, so node tests can run the real OPFS adapter. Semantics follow the spec where the
// store depends on them: createWritable() starts empty and its bytes appear only on close().

function notFound(name) { return new DOMException(`${name} not found`, 'NotFoundError'); }

class FakeFile {
  constructor(name) { this.kind = 'file'; this.name = name; this.data = new Uint8Array(0); }
  async getFile() { return new File([this.data], this.name); }
  async createWritable() {
    const self = this;
    let buf = new Uint8Array(0);
    let closed = false;
    const check = () => { if (closed) throw new DOMException('stream closed', 'InvalidStateError'); };
    return {
      async write(d) {
        check();
        let pos = buf.length;
        if (d && typeof d === 'object' && 'type' in d && !(d instanceof Blob) && !ArrayBuffer.isView(d)) {
          if (d.type !== 'write') throw new TypeError('fake-opfs: only {type:"write"} is supported');
          if (d.position != null) pos = d.position;
          d = d.data;
        }
        const bytes = typeof d === 'string' ? new TextEncoder().encode(d)
          : d instanceof Blob ? new Uint8Array(await d.arrayBuffer())
            : ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : new Uint8Array(d);
        if (self.owner.failWrites) throw self.owner.failWrites;
        const need = pos + bytes.length;
        if (need > buf.length) { const n = new Uint8Array(need); n.set(buf); buf = n; }
        buf.set(bytes, pos);
      },
      async close() { check(); closed = true; self.data = buf; },
      async abort() { closed = true; },
    };
  }
}

class FakeDir {
  constructor(name, owner) { this.kind = 'directory'; this.name = name; this.children = new Map(); this.owner = owner; }
  async getDirectoryHandle(name, { create = false } = {}) {
    const c = this.children.get(name);
    if (c) {
      if (c.kind !== 'directory') throw new DOMException(`${name} is a file`, 'TypeMismatchError');
      return c;
    }
    if (!create) throw notFound(name);
    const d = new FakeDir(name, this.owner);
    this.children.set(name, d);
    return d;
  }
  async getFileHandle(name, { create = false } = {}) {
    const c = this.children.get(name);
    if (c) {
      if (c.kind !== 'file') throw new DOMException(`${name} is a directory`, 'TypeMismatchError');
      return c;
    }
    if (!create) throw notFound(name);
    const f = new FakeFile(name);
    f.owner = this.owner;
    this.children.set(name, f);
    return f;
  }
  async removeEntry(name, { recursive = false } = {}) {
    const c = this.children.get(name);
    if (!c) throw notFound(name);
    if (c.kind === 'directory' && c.children.size > 0 && !recursive) {
      throw new DOMException(`${name} is not empty`, 'InvalidModificationError');
    }
    this.children.delete(name);
  }
  async *entries() { for (const [k, v] of [...this.children]) yield [k, v]; }
  async *keys() { for (const k of [...this.children.keys()]) yield k; }
}

/**
 * A fake navigator.storage: getDirectory() (OPFS root), estimate() with a settable quota (usage is
 * the bytes stored), persist()/persisted(). `failWrites` set to an Error makes every write throw it.
 */
export function fakeStorage({ quota = 1 << 30, extraUsage = 0 } = {}) {
  const s = {
    quota, extraUsage, persistCalls: 0, persistedState: false, failWrites: null,
    root: null,
    async getDirectory() { return s.root; },
    async estimate() { return { quota: s.quota, usage: s.usage() }; },
    async persist() { s.persistCalls++; s.persistedState = true; return true; },
    async persisted() { return s.persistedState; },
    usage() {
      let n = s.extraUsage;
      const walk = (d) => { for (const c of d.children.values()) { if (c.kind === 'file') n += c.data.length; else walk(c); } };
      walk(s.root);
      return n;
    },
    /** Finds a handle by path ('nbl-models/x.chunks/000001') for tests that tamper behind the store. */
    async at(p) {
      let cur = s.root;
      for (const part of p.split('/')) {
        cur = cur.children.get(part);
        if (!cur) return null;
      }
      return cur;
    },
  };
  s.root = new FakeDir('', s);
  return s;
}
