/**
 * The CRDs the agent suite installs: the project's generated ones from crds/ when they exist, else a
 * minimal stand-in with the same names, scope, status subresource and the status.nodes list keyed by
 * nodeName (what server-side apply of per-node entries needs).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/apiserver.js';

const MINIMAL = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: marufspools.marufs.io }
spec:
  group: marufs.io
  scope: Cluster
  names: { plural: marufspools, singular: marufspool, kind: MarufsPool, shortNames: [mpool] }
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: { status: {} }
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: { type: object, x-kubernetes-preserve-unknown-fields: true }
          status:
            type: object
            properties:
              observedGeneration: { type: integer }
              poolUUID: { type: string }
              formatGeneration: { type: integer }
              conditions: { type: array, items: { type: object, x-kubernetes-preserve-unknown-fields: true } }
              capacity: { type: object, x-kubernetes-preserve-unknown-fields: true }
              nodes:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [nodeName]
                items:
                  type: object
                  required: [nodeName]
                  properties:
                    nodeName: { type: string }
                    nodeId: { type: integer }
                    live: { type: boolean }
                    lastHeartbeat: { type: string }
                    mounted: { type: boolean }
                    mountPath: { type: string }
                    csiReady: { type: boolean }
                    message: { type: string }
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: marufsregions.marufs.io }
spec:
  group: marufs.io
  scope: Namespaced
  names: { plural: marufsregions, singular: marufsregion, kind: MarufsRegion, shortNames: [mregion] }
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: { status: {} }
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: { type: object, x-kubernetes-preserve-unknown-fields: true }
          status: { type: object, x-kubernetes-preserve-unknown-fields: true }
`;

function generated(): string | undefined {
  const files = ['marufs.io_marufspools.yaml', 'marufs.io_marufsregions.yaml'].map((f) => join(repoRoot(), 'crds', f));
  if (!files.every((f) => existsSync(f))) return undefined;
  return files.map((f) => readFileSync(f, 'utf8')).join('\n---\n');
}

export const AGENT_TEST_CRDS: string = generated() ?? MINIMAL;
