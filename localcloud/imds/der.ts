/**
 * Just enough DER to build a CMS/PKCS#7 SignedData by hand (so localcloud needs no ASN.1 library)
 * and to pull the issuer Name and serial number out of an X.509 certificate.
 */

export const TAG = {
  INTEGER: 0x02,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  SEQUENCE: 0x30,
  SET: 0x31,
  /** [0] constructed, context-specific (EXPLICIT [0] or IMPLICIT [0] of a constructed type). */
  CONTEXT_0: 0xa0,
} as const;

function encodeLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  for (let n = len; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

export function oid(dotted: string): Buffer {
  const parts = dotted.split(".").map(Number);
  const [a = 0, b = 0, ...rest] = parts;
  const bytes: number[] = [a * 40 + b];
  for (const p of rest) {
    const chunk: number[] = [p & 0x7f];
    for (let n = Math.floor(p / 128); n > 0; n = Math.floor(n / 128)) chunk.unshift((n & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(TAG.OID, Buffer.from(bytes));
}

export function smallInteger(n: number): Buffer {
  return tlv(TAG.INTEGER, Buffer.from([n]));
}

export const derNull = (): Buffer => Buffer.from([TAG.NULL, 0x00]);

export interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset just past the element. */
  end: number;
}

export function readTlv(buf: Buffer, offset: number): Tlv {
  const tag = buf[offset];
  const first = buf[offset + 1];
  if (tag === undefined || first === undefined) throw new Error(`DER: truncated element at ${offset}`);
  let len = first;
  let contentStart = offset + 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new Error(`DER: unsupported length form at ${offset}`);
    len = 0;
    for (let i = 0; i < n; i++) {
      const b = buf[offset + 2 + i];
      if (b === undefined) throw new Error(`DER: truncated length at ${offset}`);
      len = len * 256 + b;
    }
    contentStart += n;
  }
  const end = contentStart + len;
  if (end > buf.length) throw new Error(`DER: element at ${offset} runs past the end`);
  return { tag, start: offset, contentStart, end };
}

/** The children of a constructed element. */
export function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.contentStart; at < parent.end; ) {
    const t = readTlv(buf, at);
    out.push(t);
    at = t.end;
  }
  return out;
}

/** Raw DER of the certificate's issuer Name and serialNumber INTEGER (for IssuerAndSerialNumber). */
export function issuerAndSerial(certDer: Buffer): { issuer: Buffer; serial: Buffer } {
  const cert = readTlv(certDer, 0);
  const tbs = children(certDer, cert)[0];
  if (!tbs) throw new Error("certificate has no TBSCertificate");
  const fields = children(certDer, tbs);
  // An explicit [0] version comes first in v3 certificates.
  const i = fields[0]?.tag === TAG.CONTEXT_0 ? 1 : 0;
  const serial = fields[i];
  const issuer = fields[i + 2];
  if (!serial || serial.tag !== TAG.INTEGER || !issuer || issuer.tag !== TAG.SEQUENCE) {
    throw new Error("certificate: unexpected TBSCertificate layout");
  }
  return {
    serial: certDer.subarray(serial.start, serial.end),
    issuer: certDer.subarray(issuer.start, issuer.end),
  };
}
