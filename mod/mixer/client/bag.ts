/**
 * What an attribute bag is and the limits a bag from the network must keep. The wire conversions
 * (`wire.ts`) and the direct reader of wire bytes (`bag_codec.ts`) both build on this file, so
 * neither has to import the other for it. Shared by the daemon and the client library.
 *
 * @module
 */

/** A bag of attributes describing one request or connection. */
export type AttributeBag = Record<string, unknown>;

/** Limits applied to bags that arrive from the network. */
export interface BagLimits {
  /** Most attributes in one bag. */
  readonly maxAttributes: number;
  /** Longest attribute name. */
  readonly maxNameLength: number;
  /** Longest string or bytes value, and longest map key or value. */
  readonly maxValueLength: number;
  /** Most entries in one string map. */
  readonly maxMapEntries: number;
}

/** The limits the daemon applies unless told otherwise. */
export const DEFAULT_BAG_LIMITS: BagLimits = {
  maxAttributes: 256,
  maxNameLength: 128,
  maxValueLength: 16 * 1024,
  maxMapEntries: 256,
};
