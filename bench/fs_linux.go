package main

import "syscall"

// fsTypes names the file systems a temporary directory is likely on, by
// their statfs magic number.
var fsTypes = map[int64]string{
	0xef53:     "ext2/3/4",
	0x58465342: "xfs",
	0x9123683e: "btrfs",
	0x01021994: "tmpfs",
	0x794c7630: "overlayfs",
	0x2fc12fc1: "zfs",
	0x65735546: "fuse",
	0x6969:     "nfs",
}

// fsType names the file system dir is on, "unknown" when it cannot tell.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	if name, ok := fsTypes[int64(st.Type)]; ok {
		return name
	}
	return "unknown"
}
