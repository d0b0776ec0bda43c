/*
 * PeerParts: a peer's send path, request pump and receive path (src/peer/outbox.ts,
 * acks.ts, inbox.ts), made together at the first use of any of them, so that an opened
 * peer that idles has only its Peer, its link and this (docs/performance.md, idle rows).
 * Peer thread only; module-private (Peer holds one in a # field).
 *
 * Invariant: the three exist together or not at all; the Outbox knows the other two
 * (acks, releases) from the moment they exist.
 */

import { Acks } from './acks.js';
import { Inbox } from './inbox.js';
import type { PeerLink } from './link.js';
import { Outbox } from './outbox.js';
import type { Layer } from '../router.js';

export class PeerParts {
  readonly #link: PeerLink;
  readonly #owner: object;
  readonly #layerOf: (owner: object) => Layer;
  #outbox: Outbox | null = null;
  #acks: Acks | null = null;
  #inbox: Inbox | null = null;

  constructor(link: PeerLink, owner: object, layerOf: (owner: object) => Layer) {
    this.#link = link;
    this.#owner = owner;
    this.#layerOf = layerOf;
  }

  get outbox(): Outbox {
    if (this.#outbox === null) this.#make();
    return this.#outbox!;
  }

  get acks(): Acks {
    if (this.#acks === null) this.#make();
    return this.#acks!;
  }

  get inbox(): Inbox {
    if (this.#inbox === null) this.#make();
    return this.#inbox!;
  }

  #make(): void {
    const link = this.#link;
    // The link holds the ticket's layout numbers the parts need.
    const outbox = this.#outbox = new Outbox(link, link);
    const acks = this.#acks = new Acks(link, link, outbox);
    const inbox = this.#inbox = new Inbox(link, outbox, this.#owner, this.#layerOf);
    outbox.acks = acks;
    outbox.releases = inbox;
  }
}
