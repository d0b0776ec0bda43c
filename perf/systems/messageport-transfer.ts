// System "messageport-transfer": MessagePort.postMessage with the payload's
// ArrayBuffer in the transfer list. Transfer avoids the copy but not the cost:
// the sender loses the buffer, so it allocates and fills a fresh one per message.

import type { BenchSystem } from '../harness.js';
import { messagePortSystem } from './messageport.js';

export const system: BenchSystem = messagePortSystem('messageport-transfer', true);
