/* What an LD_PRELOAD attack loads: a constructor that runs inside the victim program before its main(). */
#include <fcntl.h>
#include <unistd.h>

__attribute__((constructor)) static void mark(void) {
  int fd = open("/task/preloaded", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    (void)write(fd, "requestor code ran\n", 19);
    close(fd);
  }
}
