/** Persisted resources of a stateful instance: data volumes, network identity, root lineage, snapshots and images. */
import type { ArtifactQueries, NetworkIdentity, NetworkQueries, RootLineage, RootQueries, VolumeQueries } from "../store.js";
import type { Sql } from "./statements.js";
import { type ArtifactRow, type NetworkRow, type RootRow, type VolumeRow, toArtifact, toVolume } from "../rows.js";

export function volumeQueries(sql: Sql): VolumeQueries {
  return {
    declare(instance, device, mountPoint, fsType) {
      sql("INSERT OR IGNORE INTO volumes (instance, device, mount_point, fs_type) VALUES (?, ?, ?, ?)").run(
        instance,
        device,
        mountPoint ?? "",
        fsType,
      );
    },
    setCurrent(instance, device, volumeId, availabilityZone) {
      sql("UPDATE volumes SET volume_id = ?, availability_zone = ? WHERE instance = ? AND device = ?").run(
        volumeId,
        availabilityZone,
        instance,
        device,
      );
    },
    setLatestSnapshot(instance, device, snapshotId) {
      sql("UPDATE volumes SET latest_snapshot_id = ? WHERE instance = ? AND device = ?").run(snapshotId, instance, device);
    },
    setMountPoint(instance, device, mountPoint) {
      sql("UPDATE volumes SET mount_point = ? WHERE instance = ? AND device = ?").run(mountPoint ?? "", instance, device);
    },
    list(instance) {
      return (sql("SELECT * FROM volumes WHERE instance = ? ORDER BY device").all(instance) as VolumeRow[]).map(toVolume);
    },
  };
}

export function networkQueries(sql: Sql): NetworkQueries {
  return {
    set(n) {
      sql(
        "INSERT INTO network (instance, eni_id, private_ip, subnet_id, availability_zone) VALUES (?, ?, ?, ?, ?) " +
          "ON CONFLICT(instance) DO UPDATE SET eni_id = excluded.eni_id, private_ip = excluded.private_ip, " +
          "subnet_id = excluded.subnet_id, availability_zone = excluded.availability_zone",
      ).run(n.instance, n.eniId, n.privateIp, n.subnetId, n.availabilityZone);
    },
    get(instance): NetworkIdentity | null {
      const r = sql("SELECT * FROM network WHERE instance = ?").get(instance) as NetworkRow | undefined;
      return r
        ? { instance: r.instance, eniId: r.eni_id, privateIp: r.private_ip, subnetId: r.subnet_id, availabilityZone: r.availability_zone }
        : null;
    },
  };
}

export function rootQueries(sql: Sql): RootQueries {
  return {
    set(r) {
      sql(
        "INSERT INTO root_lineage (instance, image_id, snapshot_id, root_device_name, architecture) VALUES (?, ?, ?, ?, ?) " +
          "ON CONFLICT(instance) DO UPDATE SET image_id = excluded.image_id, snapshot_id = excluded.snapshot_id, " +
          "root_device_name = excluded.root_device_name, architecture = excluded.architecture",
      ).run(r.instance, r.imageId, r.snapshotId, r.rootDeviceName, r.architecture);
    },
    get(instance): RootLineage | null {
      const r = sql("SELECT * FROM root_lineage WHERE instance = ?").get(instance) as RootRow | undefined;
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

export function artifactQueries(sql: Sql, now: () => number): ArtifactQueries {
  return {
    record(a) {
      sql(
        "INSERT OR IGNORE INTO artifacts (id, instance, kind, device, source_id, generation, region, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      ).run(a.id, a.instance, a.kind, a.device, a.sourceId, a.generation, a.region ?? null, now());
    },
    list(instance, kind, device = null) {
      const rows =
        device === null
          ? sql("SELECT * FROM artifacts WHERE instance = ? AND kind = ? AND deleted_at IS NULL ORDER BY created_at DESC, rowid DESC").all(
              instance,
              kind,
            )
          : sql(
              "SELECT * FROM artifacts WHERE instance = ? AND kind = ? AND device = ? AND deleted_at IS NULL " +
                "ORDER BY created_at DESC, rowid DESC",
            ).all(instance, kind, device);
      return (rows as ArtifactRow[]).map(toArtifact);
    },
    markDeleted(id) {
      sql("UPDATE artifacts SET deleted_at = COALESCE(deleted_at, ?) WHERE id = ?").run(now(), id);
    },
    takeCopy(id, kind, sourceId) {
      return (
        sql("UPDATE artifacts SET kind = ?, source_id = ?, region = NULL WHERE id = ? AND kind IN ('snapshot-copy', 'image-copy')").run(
          kind,
          sourceId,
          id,
        ).changes > 0
      );
    },
  };
}
