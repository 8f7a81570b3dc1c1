import { createHash } from 'node:crypto';
import { hostname, networkInterfaces } from 'node:os';

/**
 * The hostname and machine id sent with a create when the client gave none. The machine id is
 * DataCat's: the MD5 hex of the first non-loopback MAC address, so sessions from this daemon
 * group with those from DataCat's own daemon on the same machine.
 */
export function hostIdentity(): { hostname: string; machine_id: string } {
  let mac = '';
  for (const list of Object.values(networkInterfaces())) {
    for (const nic of list ?? []) {
      if (!nic.internal && nic.mac && nic.mac !== '00:00:00:00:00:00') {
        mac = nic.mac;
        break;
      }
    }
    if (mac) break;
  }
  const host = hostname();
  return { hostname: host, machine_id: createHash('md5').update(mac || host).digest('hex') };
}
