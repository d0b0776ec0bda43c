/*
 * BusError and its stable codes (the errno names of bus1).
 *
 * Errors cross threads as plain data: a small integer code on the rings (CODE_*), or a
 * { code, message, resource, uid } object on MessagePorts. Whichever thread receives it
 * rebuilds a real BusError with toBusError(), so that `instanceof BusError` and `.code`
 * work everywhere.
 */

export type BusErrorCode =
  | 'EDQUOT' | 'ENXIO' | 'ESHUTDOWN' | 'EMSGSIZE' | 'EINVAL'
  | 'ENOTUNIQ' | 'EBUSY' | 'EREMOTE' | 'ESTALE' | 'ETIMEDOUT';

export type ResourceName = 'messages' | 'handles' | 'bytes';

/** Wire numbers of the codes; 0 means success. Order is part of the ring format. */
export const ERROR_CODES: readonly BusErrorCode[] = [
  'EDQUOT', 'ENXIO', 'ESHUTDOWN', 'EMSGSIZE', 'EINVAL', 'ENOTUNIQ', 'EBUSY', 'EREMOTE', 'ESTALE', 'ETIMEDOUT',
];
export const RESOURCES: readonly ResourceName[] = ['messages', 'handles', 'bytes'];

export function codeNumber(code: BusErrorCode): number {
  return ERROR_CODES.indexOf(code) + 1;
}

export interface BusErrorData {
  code: BusErrorCode;
  message: string;
  resource?: ResourceName;
  uid?: number;
}

export class BusError extends Error {
  readonly code: BusErrorCode;
  readonly resource?: ResourceName;
  readonly uid?: number;

  constructor(code: BusErrorCode, message: string, extra?: { resource?: ResourceName; uid?: number }) {
    super(message);
    this.name = 'BusError';
    this.code = code;
    if (extra?.resource !== undefined) this.resource = extra.resource;
    if (extra?.uid !== undefined) this.uid = extra.uid;
  }

  toJSON(): BusErrorData {
    const data: BusErrorData = { code: this.code, message: this.message };
    if (this.resource !== undefined) data.resource = this.resource;
    if (this.uid !== undefined) data.uid = this.uid;
    return data;
  }
}

/** Rebuild a BusError that crossed a thread as plain data. */
export function toBusError(data: BusErrorData): BusError {
  return new BusError(data.code, data.message, { resource: data.resource, uid: data.uid });
}

export function isBusErrorData(x: unknown): x is BusErrorData {
  return typeof x === 'object' && x !== null && typeof (x as BusErrorData).code === 'string'
    && ERROR_CODES.includes((x as BusErrorData).code);
}

/**
 * The words for a code that arrived as numbers on a ring. `detail` is an id or a size,
 * depending on the code; `op` names what was attempted.
 */
export function errorFromWire(op: string, code: number, resource: number, detail: number, uid: number): BusError {
  const name = ERROR_CODES[code - 1] ?? 'EINVAL';
  switch (name) {
    case 'EDQUOT': {
      const res = RESOURCES[resource] ?? 'messages';
      return new BusError('EDQUOT',
        `${op}: quota exceeded: uid ${uid} will not take more ${res} from this sender right now (it may retry after the receiver dequeues)`,
        { resource: res, uid });
    }
    case 'ENXIO':
      return new BusError('ENXIO', `${op}: handle ${detail} is not known to this peer`);
    case 'ESHUTDOWN':
      return new BusError('ESHUTDOWN', detail > 0
        ? `${op}: the node behind handle ${detail} is destroyed or its owner has disconnected`
        : `${op}: the peer or the bus is shut down`);
    case 'EMSGSIZE':
      return new BusError('EMSGSIZE', `${op}: message of ${detail} bytes is larger than the bus allows`);
    case 'ENOTUNIQ':
      return new BusError('ENOTUNIQ', `${op}: handle ${detail} is named twice`);
    case 'EBUSY':
      return new BusError('EBUSY', `${op}: handle ${detail} is the owner's handle of a live node; destroy the node first`);
    case 'EREMOTE':
      return new BusError('EREMOTE', `${op}: handle ${detail} refers to a node this peer does not own`);
    case 'ESTALE':
      return new BusError('ESTALE', `${op}: the node behind handle ${detail} is already destroyed`);
    default:
      return new BusError('EINVAL', `${op}: malformed request (${detail})`);
  }
}
