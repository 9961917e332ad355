import type {
  DataCentersTable,
  DiskIOProfilesTable,
  DiskTemplatesTable,
  DiskTemplateVersionsTable,
  HostsTable,
  IsosTable,
  NetworkSpeedProfilesTable,
  NetworksTable,
  OrganizationsTable,
  PackagesTable,
  SshKeysTable,
  SubnetsTable,
  TagsTable,
  UsersTable,
  VirtualMachineGroupsTable,
  VirtualNetworksTable,
  ZonesTable,
  Row,
} from "../store/index.js";

/**
 * Everything a spec may refer to, as seen by one organization at one moment. The
 * planner reads only this, so it is a pure function that tests can feed by hand.
 * Organization-owned lists hold only that organization's rows: another tenant's
 * objects are simply not there, so a reference to them reads like a reference to nothing.
 */
export interface CatalogSnapshot {
  organization: OrganizationsTable;
  dataCenters: DataCentersTable[];
  zones: ZonesTable[];
  hosts: HostsTable[];
  packages: PackagesTable[];
  templates: DiskTemplatesTable[];
  templateVersions: DiskTemplateVersionsTable[];
  ioProfiles: DiskIOProfilesTable[];
  networks: NetworksTable[];
  subnets: SubnetsTable[];
  speedProfiles: NetworkSpeedProfilesTable[];
  virtualNetworks: VirtualNetworksTable[];
  /** The organization's SSH keys (with the user each belongs to, if any). */
  sshKeys: SshKeysTable[];
  /** Users with access to the organization. */
  members: UsersTable[];
  groups: VirtualMachineGroupsTable[];
  tags: TagsTable[];
  isos: IsosTable[];
  /** The organization's disks. */
  disks: Row<"disks">[];
  /** The organization's IP addresses. */
  ipAddresses: Row<"ip_addresses">[];
}
