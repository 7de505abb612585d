/** Persisted resources of a stateful instance: data volumes, network identity, root lineage, snapshots and images. */
import type { ArtifactQueries, Async, NetworkIdentity, NetworkQueries, RootLineage, RootQueries, VolumeQueries } from "../store.js";
import type { Sql } from "./sql.js";
import { type ArtifactRow, type NetworkRow, type RootRow, type VolumeRow, toArtifact, toVolume } from "../rows.js";

export function volumeQueries(sql: Sql): Async<VolumeQueries> {
  return {
    async declare(instance, device, mountPoint, fsType) {
      await sql.run(
        "INSERT INTO volumes (instance, device, mount_point, fs_type) VALUES ($1, $2, $3, $4) ON CONFLICT (instance, device) DO NOTHING",
        [instance, device, mountPoint ?? "", fsType],
      );
    },
    async setCurrent(instance, device, volumeId, availabilityZone) {
      await sql.run("UPDATE volumes SET volume_id = $1, availability_zone = $2 WHERE instance = $3 AND device = $4", [
        volumeId,
        availabilityZone,
        instance,
        device,
      ]);
    },
    async setLatestSnapshot(instance, device, snapshotId) {
      await sql.run("UPDATE volumes SET latest_snapshot_id = $1 WHERE instance = $2 AND device = $3", [snapshotId, instance, device]);
    },
    async setMountPoint(instance, device, mountPoint) {
      await sql.run("UPDATE volumes SET mount_point = $1 WHERE instance = $2 AND device = $3", [mountPoint ?? "", instance, device]);
    },
    async list(instance) {
      return (await sql.rows<VolumeRow>('SELECT * FROM volumes WHERE instance = $1 ORDER BY device COLLATE "C"', [instance])).map(toVolume);
    },
  };
}

export function networkQueries(sql: Sql): Async<NetworkQueries> {
  return {
    async set(n) {
      await sql.run(
        "INSERT INTO network (instance, eni_id, private_ip, subnet_id, availability_zone) VALUES ($1, $2, $3, $4, $5) " +
          "ON CONFLICT (instance) DO UPDATE SET eni_id = excluded.eni_id, private_ip = excluded.private_ip, " +
          "subnet_id = excluded.subnet_id, availability_zone = excluded.availability_zone",
        [n.instance, n.eniId, n.privateIp, n.subnetId, n.availabilityZone],
      );
    },
    async get(instance): Promise<NetworkIdentity | null> {
      const r = await sql.row<NetworkRow>("SELECT * FROM network WHERE instance = $1", [instance]);
      return r
        ? { instance: r.instance, eniId: r.eni_id, privateIp: r.private_ip, subnetId: r.subnet_id, availabilityZone: r.availability_zone }
        : null;
    },
  };
}

export function rootQueries(sql: Sql): Async<RootQueries> {
  return {
    async set(r) {
      await sql.run(
        "INSERT INTO root_lineage (instance, image_id, snapshot_id, root_device_name, architecture) VALUES ($1, $2, $3, $4, $5) " +
          "ON CONFLICT (instance) DO UPDATE SET image_id = excluded.image_id, snapshot_id = excluded.snapshot_id, " +
          "root_device_name = excluded.root_device_name, architecture = excluded.architecture",
        [r.instance, r.imageId, r.snapshotId, r.rootDeviceName, r.architecture],
      );
    },
    async get(instance): Promise<RootLineage | null> {
      const r = await sql.row<RootRow>("SELECT * FROM root_lineage WHERE instance = $1", [instance]);
      return r
        ? {
            instance: r.instance,
            imageId: r.image_id,
            snapshotId: r.snapshot_id,
            rootDeviceName: r.root_device_name,
            architecture: r.architecture,
          }
        : null;
    },
  };
}

const ARTIFACT_COLUMNS = "id, instance, kind, device, source_id, generation, region, created_at, deleted_at";

export function artifactQueries(sql: Sql, now: () => number): Async<ArtifactQueries> {
  return {
    async record(a) {
      await sql.run(
        "INSERT INTO artifacts (id, instance, kind, device, source_id, generation, region, created_at) " +
          "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        [a.id, a.instance, a.kind, a.device, a.sourceId, a.generation, a.region ?? null, now()],
      );
    },
    async list(instance, kind, device = null) {
      const rows =
        device === null
          ? await sql.rows<ArtifactRow>(
              `SELECT ${ARTIFACT_COLUMNS} FROM artifacts WHERE instance = $1 AND kind = $2 AND deleted_at IS NULL ` +
                "ORDER BY created_at DESC, row_seq DESC",
              [instance, kind],
            )
          : await sql.rows<ArtifactRow>(
              `SELECT ${ARTIFACT_COLUMNS} FROM artifacts WHERE instance = $1 AND kind = $2 AND device = $3 AND deleted_at IS NULL ` +
                "ORDER BY created_at DESC, row_seq DESC",
              [instance, kind, device],
            );
      return rows.map(toArtifact);
    },
    async markDeleted(id) {
      await sql.run("UPDATE artifacts SET deleted_at = COALESCE(deleted_at, $1) WHERE id = $2", [now(), id]);
    },
    async takeCopy(id, kind, sourceId) {
      const changed = await sql.run(
        "UPDATE artifacts SET kind = $1, source_id = $2, region = NULL WHERE id = $3 AND kind IN ('snapshot-copy', 'image-copy')",
        [kind, sourceId, id],
      );
      return changed > 0;
    },
  };
}
