/**
 * The CSI protocol definitions: proto/csi.proto (package csi.v1, the spec's names and field numbers)
 * loaded at run time with @grpc/proto-loader, and the TypeScript shapes of the messages marufs reads
 * and writes.
 *
 * The .proto file is found from the package root (the nearest folder above this module holding the
 * package.json named "marufs"), so the same code works from src/ and from the compiled dist/src/.
 * Loader options: field names as in the .proto (keepCase), 64-bit integers as decimal strings,
 * defaults filled in (an absent string is "", an absent map {}), and the name of the chosen member of
 * each oneof in a virtual field (`access_type: 'mount' | 'block'`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The folder holding marufs' package.json, found upwards from `from` (default: this module). */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'marufs') return dir;
      } catch {
        /* not ours */
      }
    }
    if (dirname(dir) === dir) throw new Error(`no marufs package.json above ${from}`);
  }
}

/** Path of proto/csi.proto in this package. */
export function csiProtoPath(): string {
  return join(packageRoot(), 'proto', 'csi.proto');
}

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Load csi.proto (plus `extraFiles`, which may import "csi.proto") as a gRPC package definition. */
export function loadCsiPackage(extraFiles: string[] = [], includeDirs: string[] = []): grpc.GrpcObject {
  const proto = csiProtoPath();
  const def = protoLoader.loadSync([proto, ...extraFiles], {
    ...LOADER_OPTIONS,
    includeDirs: [dirname(proto), ...includeDirs],
  });
  return grpc.loadPackageDefinition(def);
}

/** The csi.v1 namespace of a loaded package. */
export function csiV1(pkg: grpc.GrpcObject): Record<string, grpc.ServiceClientConstructor> {
  return (pkg['csi'] as grpc.GrpcObject)['v1'] as unknown as Record<string, grpc.ServiceClientConstructor>;
}

/** The marufs version (vendor_version). */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

// ---- message shapes (as decoded with LOADER_OPTIONS) ---------------------------------------------

export type AccessModeName =
  | 'UNKNOWN'
  | 'SINGLE_NODE_WRITER'
  | 'SINGLE_NODE_READER_ONLY'
  | 'MULTI_NODE_READER_ONLY'
  | 'MULTI_NODE_SINGLE_WRITER'
  | 'MULTI_NODE_MULTI_WRITER'
  | 'SINGLE_NODE_SINGLE_WRITER'
  | 'SINGLE_NODE_MULTI_WRITER';

export interface VolumeCapability {
  block?: Record<string, never> | null;
  mount?: { fs_type: string; mount_flags: string[]; volume_mount_group: string } | null;
  access_type?: 'block' | 'mount';
  access_mode?: { mode: AccessModeName | number } | null;
}

export interface NodePublishVolumeRequest {
  volume_id: string;
  publish_context: Record<string, string>;
  staging_target_path: string;
  target_path: string;
  volume_capability: VolumeCapability | null;
  readonly: boolean;
  secrets: Record<string, string>;
  volume_context: Record<string, string>;
}

export interface NodeUnpublishVolumeRequest {
  volume_id: string;
  target_path: string;
}

export interface NodeGetVolumeStatsRequest {
  volume_id: string;
  volume_path: string;
  staging_target_path: string;
}

export interface VolumeUsage {
  available: number | string;
  total: number | string;
  used: number | string;
  unit: 'BYTES' | 'INODES';
}

export interface NodeGetVolumeStatsResponse {
  usage: VolumeUsage[];
  volume_condition: { abnormal: boolean; message: string };
}

export interface NodeGetInfoResponse {
  node_id: string;
  max_volumes_per_node: number | string;
  accessible_topology: { segments: Record<string, string> };
}
