/*
 * Nodes and handles (bus1 handle.c). Coordinator thread only.
 *
 * A node is owned forever by the peer that created it and is the only thing a message
 * can be sent to. A handle is one peer's reference to one node, under an id local to
 * that peer. Invariants:
 *   - a peer holds at most one Handle per node (node.holders maps peer -> handle);
 *     receiving the node again only adds to handle.refs;
 *   - while a node is alive its owner holds a handle to it (node.ownerHandle), and the
 *     owner may not drop its last reference (EBUSY) before destroying the node;
 *   - handle ids are assigned by the coordinator, per peer, from 1 upwards, never reused;
 *   - a destroyed node keeps its handles until each holder releases them: the ids stay
 *     valid for releaseHandle, and every send to them fails with ESHUTDOWN;
 *   - every reference counts against the holder's `handles` resource (each ref is one).
 *
 * node-release: when the last holder other than the owner lets go of a live node, the
 * owner is told. The notification is withdrawn if a new holder appears before the owner
 * reads it (see PeerState.cancelRelease).
 */

let nextNodeSerial = 1;

export class BusNode<P> {
  readonly serial = nextNodeSerial++;
  readonly owner: P;
  readonly holders = new Map<P, Handle<P>>();
  ownerHandle!: Handle<P>;
  destroyed = false;
  /** Descriptor position of an unread node-release to the owner, or -1. */
  releasePosition = -1;
  /** The same, while that node-release still waits in the owner's overflow queue. */
  releaseOverflow: { kindWord: number } | null = null;
  /** Scratch mark for duplicate detection inside one transaction. */
  txMark = 0;

  constructor(owner: P) {
    this.owner = owner;
  }

  /** Holders besides the owner. */
  get foreignHolders(): number {
    return this.holders.size - (this.holders.has(this.owner) ? 1 : 0);
  }
}

export class Handle<P> {
  readonly id: number;
  readonly node: BusNode<P>;
  readonly peer: P;
  refs = 0;
  /** References that arrived in messages the holder has not received yet. */
  refsInFlight = 0;

  constructor(id: number, node: BusNode<P>, peer: P) {
    this.id = id;
    this.node = node;
    this.peer = peer;
  }
}
