package seqrep.fs;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;

import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's local file system (checksums included) with permissions set through java.nio.
 *
 * Without Hadoop's native library, RawLocalFileSystem sets the permission of every file and
 * folder it creates by running a {@code chmod} process: a Spark job writing thousands of daily
 * partitions spends most of its time starting processes. This sets the same mode bits in-process.
 */
public class NioLocalFileSystem extends LocalFileSystem {
  public NioLocalFileSystem() {
    super(new Raw());
  }

  /** The raw (checksum-free) layer: RawLocalFileSystem with an in-process setPermission. */
  public static class Raw extends RawLocalFileSystem {
    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
      Files.setPosixFilePermissions(pathToFile(p).toPath(), posix(permission.toShort()));
    }
  }

  /** The rwx bits of a mode (owner, group, others), in PosixFilePermission's order. */
  static Set<PosixFilePermission> posix(short mode) {
    PosixFilePermission[] all = PosixFilePermission.values();
    Set<PosixFilePermission> out = EnumSet.noneOf(PosixFilePermission.class);
    for (int i = 0; i < 9; i++) {
      if ((mode & (1 << (8 - i))) != 0) {
        out.add(all[i]);
      }
    }
    return out;
  }
}
