/**
 * Types of the parts of the npm package `hpack.js` (HPACK, RFC 7541) that hpack.ts uses: the
 * compressor and decompressor streams over a dynamic table of a given size.
 */
declare module "hpack.js" {
  /** One header field as hpack.js reads and writes it. */
  interface HpackField {
    name: string;
    value: string;
    /** Whether the field may enter the dynamic table (default true). */
    incremental?: boolean;
    /** Huffman-code the strings (default true). */
    huffman?: boolean;
    neverIndex?: boolean;
  }
  /** Options of a compressor or decompressor: the dynamic table's size, bytes. */
  interface HpackOptions {
    table: { maxSize: number };
  }
  /** Encodes lists of header fields into header blocks (readable as bytes). */
  interface HpackCompressor {
    write(fields: HpackField[]): boolean;
    read(): Buffer | null;
    updateTableSize(size: number): void;
  }
  /** Decodes header blocks (written as bytes) into header fields (readable as objects). */
  interface HpackDecompressor {
    write(block: Buffer): boolean;
    /** Decodes what was written; errors are emitted as `error` when no callback is given. */
    execute(): void;
    read(): HpackField | null;
    on(event: "error", fn: (err: Error) => void): void;
    updateTableSize(size: number): void;
  }
  const hpack: {
    compressor: { create(o: HpackOptions): HpackCompressor };
    decompressor: { create(o: HpackOptions): HpackDecompressor };
  };
  export default hpack;
}
