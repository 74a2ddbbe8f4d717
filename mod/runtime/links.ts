/**
 * Typed links between modules. A module offers an interface under a key; another looks it up.
 * The same key can be satisfied in-process or by a network client, so modules never import
 * each other's internals.
 */

/** A typed name for an interface one module offers to others. */
export interface LinkKey<T> {
  readonly name: string;
  /** Phantom field carrying the type; never set. */
  readonly _type?: T;
}

/** Creates a key. */
export function linkKey<T>(name: string): LinkKey<T> {
  return { name };
}

/** The registry of offered interfaces. */
export interface Links {
  /** Offers `value` under `key`. Offering the same key twice is a bug and throws. */
  offer<T>(key: LinkKey<T>, value: T): void;
  /** The value offered under `key`, or undefined. */
  find<T>(key: LinkKey<T>): T | undefined;
}

/** Creates an empty registry. */
export function createLinks(): Links {
  const values = new Map<string, unknown>();
  return {
    offer(key, value) {
      if (values.has(key.name)) throw new Error(`link ${key.name} is already offered`);
      values.set(key.name, value);
    },
    find: <T>(key: LinkKey<T>) => values.get(key.name) as T | undefined,
  };
}
