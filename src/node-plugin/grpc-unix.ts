/**
 * gRPC servers on unix sockets, as the CSI Node service, the kubelet plugin registration and the
 * operator's CSI Controller run them: bind (with a clear error naming what could not be served) and
 * stop (graceful, forced after a grace period).
 */
import * as grpc from '@grpc/grpc-js';

/** Bind `server` to the unix socket `socket`; `what` names the service in the error. */
export function bindUnix(server: grpc.Server, socket: string, what: string): Promise<void> {
  return new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(new Error(`cannot serve ${what} on ${socket}: ${err.message}`)) : resolve(),
    ),
  );
}

/** Let in-flight calls finish, then stop; after `graceMs` cancel whatever is left. */
export function stopGrpc(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    t.unref();
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}
