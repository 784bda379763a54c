/**
 * A minimal Redis (RESP2) client for the ME benchmark: one connection, one command in flight at a
 * time, replies parsed into strings, numbers, null, arrays or an Error. Enough for SET NX PX,
 * SCRIPT LOAD and EVALSHA; no dependency.
 */
import { connect, type Socket } from 'node:net';

export type RespValue = string | number | null | Error | RespValue[];

export class RespClient {
  #socket: Socket;
  #buf: Buffer = Buffer.alloc(0);
  #waiters: ((v: RespValue) => void)[] = [];

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
      for (;;) {
        const parsed = parse(this.#buf, 0);
        if (!parsed) break;
        this.#buf = this.#buf.subarray(parsed.end);
        this.#waiters.shift()?.(parsed.value);
      }
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, host, () => resolve(new RespClient(s)));
      s.once('error', reject);
    });
  }

  command(...args: (string | number)[]): Promise<RespValue> {
    let out = `*${args.length}\r\n`;
    for (const a of args) {
      const s = String(a);
      out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
    }
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#socket.write(out);
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

function parse(buf: Buffer, pos: number): { value: RespValue; end: number } | undefined {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[pos]!);
  const line = buf.toString('utf8', pos + 1, eol);
  switch (type) {
    case '+':
      return { value: line, end: eol + 2 };
    case '-':
      return { value: new Error(line), end: eol + 2 };
    case ':':
      return { value: Number(line), end: eol + 2 };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: eol + 2 };
      if (buf.length < eol + 2 + len + 2) return undefined;
      return { value: buf.toString('utf8', eol + 2, eol + 2 + len), end: eol + 2 + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      const items: RespValue[] = [];
      let p = eol + 2;
      for (let i = 0; i < n; i++) {
        const item = parse(buf, p);
        if (!item) return undefined;
        items.push(item.value);
        p = item.end;
      }
      return { value: items, end: p };
    }
    default:
      throw new Error(`bad RESP reply type ${JSON.stringify(type)}`);
  }
}
