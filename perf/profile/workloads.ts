// The workloads `npm run profile` knows (shared by perf/profile.ts and perf/profile/run.ts).
export const WORKLOADS = ['unicast', 'request-reply', 'multicast', 'fanin'] as const;
export type ProfileWorkload = typeof WORKLOADS[number];
/** Int32 indices of the control block the main thread shares with the peer threads. */
export const STOP = 0;
export const EXPECTED = 1;
