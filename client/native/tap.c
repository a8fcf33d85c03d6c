/*
 * edgelan TAP addon: opens Linux TAP devices (IFF_TAP | IFF_NO_PI) and moves
 * Ethernet frames between them and JavaScript in batches.
 *
 *   open(name, netnsPath?, vnetHdr?) -> { handle, fd, name } (device created in netnsPath if given;
 *                                  vnetHdr: IFF_VNET_HDR with a 10-byte header and TSO4/TSO6/CSUM offloads)
 *   start(handle, onFrames, onError)                         (uv_poll on the fd; one call per batch)
 *   write(handle, frames[])       -> number written          (one write() per frame; EAGAIN = drop)
 *   stats(handle)                 -> counters
 *   close(handle)                                            (stops the poll, closes the fd)
 *   setMtu / setMac / setUp / getInfo (name, ..., netnsPath?) (ioctls on an AF_INET socket)
 *
 * Reads: on readability the fd is drained until EAGAIN (or until the arena or
 * the frame budget is full; the poll is level-triggered, so the rest comes on
 * the next loop turn) and JavaScript is called once with an array of
 * Uint8Array views. The frames are read straight into an "arena": a 4 MiB
 * ArrayBuffer that JavaScript owns, filled front to back and never written
 * twice, so no copy is made and a view stays valid for as long as it is kept
 * (it keeps its arena alive). A new arena starts when less than one read slot
 * is left in the current one.
 * Errors thrown to JavaScript carry `code` (errno name), `errno` and `syscall`.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Largest frame a TAP without a virtio-net header hands over: MTU 65535 + headers, rounded up. */
#define READ_SLOT 65792
#define ARENA_BYTES (4 * 1024 * 1024)
#define BATCH_FRAMES 1024

typedef struct {
  napi_env env;
  int fd;
  int refs; /* one for the JS external, one while inside the poll callback */
  char name[IFNAMSIZ];
  uv_poll_t *poll;
  napi_ref self;      /* keeps the external alive while polling */
  napi_ref on_frames; /* (frames: Uint8Array[]) => void */
  napi_ref on_error;  /* (code: string, message: string) => void */
  napi_async_context async_ctx;
  napi_ref arena_ref; /* the ArrayBuffer frames are read into; NULL until the first read */
  uint8_t *arena;     /* its bytes (V8 never moves an ArrayBuffer's backing store) */
  size_t arena_used;  /* bytes handed out so far; everything after is unread */
  uint32_t offsets[BATCH_FRAMES];
  uint32_t lengths[BATCH_FRAMES];
  double rx_frames, rx_bytes, rx_batches, rx_errors;
  double tx_frames, tx_bytes, tx_dropped, tx_errors;
  int last_errno;
} tap_dev;

#define CHECK(call)                                                        \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error(env, "EADDON", "edgelan tap addon: " #call " failed"); \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *what) {
  char message[256];
  const char *code = uv_err_name(-err);
  snprintf(message, sizeof message, "%s %s: %s (%s)", syscall, what, strerror(err), code);
  napi_value msg, code_value, error, errno_value, syscall_value;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value);
  napi_create_error(env, code_value, msg, &error);
  napi_create_int32(env, err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  napi_throw(env, error);
  return NULL;
}

/* ---- network namespaces: the calling thread enters the target and comes back ---- */

static int enter_netns(napi_env env, const char *path, int *saved) {
  *saved = -1;
  if (path == NULL || path[0] == '\0') return 0;
  int original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original < 0) {
    throw_errno(env, errno, "open", "/proc/thread-self/ns/net");
    return -1;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(original);
    throw_errno(env, err, "open", path);
    return -1;
  }
  if (setns(target, CLONE_NEWNET) < 0) {
    int err = errno;
    close(target);
    close(original);
    throw_errno(env, err, "setns", path);
    return -1;
  }
  close(target);
  *saved = original;
  return 0;
}

static void leave_netns(int saved) {
  if (saved < 0) return;
  if (setns(saved, CLONE_NEWNET) < 0) {
    /* The main thread would stay in the wrong namespace: nothing sane can continue. */
    napi_fatal_error("edgelan tap addon", NAPI_AUTO_LENGTH, "could not return to the original network namespace",
                     NAPI_AUTO_LENGTH);
  }
  close(saved);
}

/* ---- argument helpers ---- */

static int get_string(napi_env env, napi_value value, char *out, size_t size, const char *what) {
  napi_valuetype type;
  size_t length = 0;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_string) {
    char message[128];
    snprintf(message, sizeof message, "%s must be a string", what);
    napi_throw_type_error(env, "EINVAL", message);
    return -1;
  }
  napi_get_value_string_utf8(env, value, NULL, 0, &length);
  if (length >= size) {
    char message[128];
    snprintf(message, sizeof message, "%s is too long (%zu bytes, at most %zu)", what, length, size - 1);
    napi_throw_range_error(env, "ENAMETOOLONG", message);
    return -1;
  }
  napi_get_value_string_utf8(env, value, out, size, &length);
  return 0;
}

/* Optional netns path: undefined/null means "the current namespace". */
static int get_netns(napi_env env, size_t argc, napi_value *argv, size_t index, char *out, size_t size) {
  out[0] = '\0';
  if (argc <= index) return 0;
  napi_valuetype type;
  napi_typeof(env, argv[index], &type);
  if (type == napi_undefined || type == napi_null) return 0;
  return get_string(env, argv[index], out, size, "netns path");
}

static tap_dev *get_dev(napi_env env, napi_value value) {
  napi_valuetype type;
  void *data = NULL;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external ||
      napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "EINVAL", "expected a TAP handle from open()");
    return NULL;
  }
  return (tap_dev *)data;
}

/* ---- lifetime ---- */

static void dev_unref(tap_dev *dev) {
  if (--dev->refs > 0) return;
  if (dev->fd >= 0) close(dev->fd);
  free(dev);
}

static void poll_closed(uv_handle_t *handle) { free(handle); }

static void stop_polling(tap_dev *dev) {
  napi_env env = dev->env;
  if (dev->poll != NULL) {
    uv_poll_stop(dev->poll);
    uv_close((uv_handle_t *)dev->poll, poll_closed);
    dev->poll = NULL;
  }
  if (dev->on_frames != NULL) napi_delete_reference(env, dev->on_frames);
  if (dev->on_error != NULL) napi_delete_reference(env, dev->on_error);
  if (dev->async_ctx != NULL) napi_async_destroy(env, dev->async_ctx);
  if (dev->self != NULL) napi_delete_reference(env, dev->self);
  if (dev->arena_ref != NULL) napi_delete_reference(env, dev->arena_ref);
  dev->arena_ref = NULL;
  dev->arena = NULL;
  dev->on_frames = NULL;
  dev->on_error = NULL;
  dev->async_ctx = NULL;
  dev->self = NULL;
}

static void dev_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  tap_dev *dev = (tap_dev *)data;
  /* Only reachable once nothing polls (the poll holds `self`), so the fd can simply go. */
  if (dev->arena_ref != NULL) napi_delete_reference(env, dev->arena_ref);
  dev->arena_ref = NULL;
  if (dev->fd >= 0) {
    close(dev->fd);
    dev->fd = -1;
  }
  dev_unref(dev);
}

/* ---- calling JavaScript from the loop ---- */

static void call_js(tap_dev *dev, napi_ref ref, size_t argc, napi_value *argv) {
  napi_env env = dev->env;
  napi_value fn, recv, result;
  if (ref == NULL || napi_get_reference_value(env, ref, &fn) != napi_ok || fn == NULL) return;
  napi_get_global(env, &recv); /* napi_make_callback needs an object receiver */
  napi_status status = napi_make_callback(env, dev->async_ctx, recv, fn, argc, argv, &result);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (status != napi_ok && pending) {
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    napi_fatal_exception(env, exception);
  }
}

static void report_error(tap_dev *dev, int err, const char *what) {
  napi_env env = dev->env;
  char message[256];
  snprintf(message, sizeof message, "%s %s: %s", what, dev->name, strerror(err));
  napi_value argv[2];
  napi_create_string_utf8(env, uv_err_name(-err), NAPI_AUTO_LENGTH, &argv[0]);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &argv[1]);
  napi_ref on_error = dev->on_error;
  dev->on_error = NULL; /* report once; the poll stops below */
  if (dev->poll != NULL) {
    uv_poll_stop(dev->poll);
  }
  call_js(dev, on_error, 2, argv);
  if (on_error != NULL) napi_delete_reference(env, on_error);
}

/* Makes sure the arena has room for one more read; 0 on success, -1 when no new arena could be made. */
static int ensure_arena(tap_dev *dev) {
  if (dev->arena != NULL && ARENA_BYTES - dev->arena_used >= READ_SLOT) return 0;
  napi_env env = dev->env;
  napi_value buffer;
  void *data = NULL;
  napi_ref ref = NULL;
  if (napi_create_arraybuffer(env, ARENA_BYTES, &data, &buffer) != napi_ok ||
      napi_create_reference(env, buffer, 1, &ref) != napi_ok) {
    return -1;
  }
  /* The old arena lives on in the views JavaScript still holds, and goes with the last of them. */
  if (dev->arena_ref != NULL) napi_delete_reference(env, dev->arena_ref);
  dev->arena_ref = ref;
  dev->arena = data;
  dev->arena_used = 0;
  return 0;
}

static void deliver(tap_dev *dev, size_t count) {
  napi_env env = dev->env;
  napi_value buffer, frames;
  if (napi_get_reference_value(env, dev->arena_ref, &buffer) != napi_ok || buffer == NULL) {
    dev->rx_errors += 1;
    return;
  }
  napi_create_array_with_length(env, count, &frames);
  for (size_t i = 0; i < count; i++) {
    napi_value view;
    napi_create_typedarray(env, napi_uint8_array, dev->lengths[i], buffer, dev->offsets[i], &view);
    napi_set_element(env, frames, (uint32_t)i, view);
  }
  dev->rx_batches += 1;
  call_js(dev, dev->on_frames, 1, &frames);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  tap_dev *dev = (tap_dev *)handle->data;
  if (dev == NULL || dev->poll != handle) return;
  napi_env env = dev->env;
  napi_handle_scope scope;
  dev->refs++;
  napi_open_handle_scope(env, &scope);
  if (status < 0) {
    dev->rx_errors += 1;
    report_error(dev, -status, "poll");
  } else if (ensure_arena(dev) < 0) {
    dev->rx_errors += 1; /* out of memory: the frames stay in the kernel queue (dropped there when it is full) */
  } else {
    size_t count = 0;
    int failed = 0;
    while (count < BATCH_FRAMES && ARENA_BYTES - dev->arena_used >= READ_SLOT) {
      ssize_t n = read(dev->fd, dev->arena + dev->arena_used, READ_SLOT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) failed = errno;
        break;
      }
      if (n == 0) break;
      dev->offsets[count] = (uint32_t)dev->arena_used;
      dev->lengths[count] = (uint32_t)n;
      dev->rx_frames += 1;
      dev->rx_bytes += (double)n;
      dev->arena_used += (size_t)n;
      count++;
    }
    if (count > 0) deliver(dev, count);
    if (failed != 0 && dev->poll == handle) {
      dev->rx_errors += 1;
      dev->last_errno = failed;
      report_error(dev, failed, "read");
    }
  }
  napi_close_handle_scope(env, scope);
  dev_unref(dev);
}

/* ---- exported functions ---- */

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char name[IFNAMSIZ];
  char netns[4096];
  bool vnet_hdr = false;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "EINVAL", "open(name, netnsPath?) needs a name");
    return NULL;
  }
  if (get_string(env, argv[0], name, sizeof name, "interface name") < 0) return NULL;
  if (get_netns(env, argc, argv, 1, netns, sizeof netns) < 0) return NULL;
  if (argc >= 3 && napi_get_value_bool(env, argv[2], &vnet_hdr) != napi_ok) vnet_hdr = false;

  int saved;
  if (enter_netns(env, netns, &saved) < 0) return NULL;
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    leave_netns(saved);
    return throw_errno(env, err, "open", "/dev/net/tun");
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name, strlen(name));
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    leave_netns(saved);
    return throw_errno(env, err, "ioctl(TUNSETIFF)", name);
  }
  if (vnet_hdr) {
    /* 10 bytes: struct virtio_net_hdr without num_buffers; the offloads let the kernel hand over GSO super-frames. */
    int hdr_size = 10;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_size) < 0) {
      int err = errno;
      close(fd);
      leave_netns(saved);
      return throw_errno(env, err, "ioctl(TUNSETVNETHDRSZ)", name);
    }
    if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) < 0) {
      int err = errno;
      close(fd);
      leave_netns(saved);
      return throw_errno(env, err, "ioctl(TUNSETOFFLOAD)", name);
    }
  }
  leave_netns(saved);

  tap_dev *dev = calloc(1, sizeof *dev);
  if (dev == NULL) {
    close(fd);
    return throw_errno(env, ENOMEM, "malloc", "device state");
  }
  dev->env = env;
  dev->fd = fd;
  dev->refs = 1;
  memcpy(dev->name, ifr.ifr_name, IFNAMSIZ);
  dev->name[IFNAMSIZ - 1] = '\0';

  napi_value result, handle, fd_value, name_value;
  if (napi_create_external(env, dev, dev_finalize, NULL, &handle) != napi_ok) {
    dev_unref(dev);
    napi_throw_error(env, "EADDON", "could not create the TAP handle");
    return NULL;
  }
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_int32(env, fd, &fd_value));
  CHECK(napi_create_string_utf8(env, dev->name, NAPI_AUTO_LENGTH, &name_value));
  CHECK(napi_set_named_property(env, result, "handle", handle));
  CHECK(napi_set_named_property(env, result, "fd", fd_value));
  CHECK(napi_set_named_property(env, result, "name", name_value));
  return result;
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, "EINVAL", "start(handle, onFrames, onError)");
    return NULL;
  }
  tap_dev *dev = get_dev(env, argv[0]);
  if (dev == NULL) return NULL;
  napi_valuetype t1, t2;
  napi_typeof(env, argv[1], &t1);
  napi_typeof(env, argv[2], &t2);
  if (t1 != napi_function || t2 != napi_function) {
    napi_throw_type_error(env, "EINVAL", "start: onFrames and onError must be functions");
    return NULL;
  }
  if (dev->fd < 0) {
    napi_throw_error(env, "EBADF", "start: the TAP device is closed");
    return NULL;
  }
  if (dev->poll != NULL) {
    napi_throw_error(env, "EALREADY", "start: already polling");
    return NULL;
  }
  uv_loop_t *loop = NULL;
  CHECK(napi_get_uv_event_loop(env, &loop));
  uv_poll_t *poll = calloc(1, sizeof *poll);
  if (poll == NULL) return throw_errno(env, ENOMEM, "malloc", "poll handle");
  int rc = uv_poll_init(loop, poll, dev->fd);
  if (rc < 0) {
    free(poll);
    return throw_errno(env, -rc, "uv_poll_init", dev->name);
  }
  poll->data = dev;
  napi_value resource_name;
  CHECK(napi_create_string_utf8(env, "edgelan:tap", NAPI_AUTO_LENGTH, &resource_name));
  CHECK(napi_async_init(env, NULL, resource_name, &dev->async_ctx));
  CHECK(napi_create_reference(env, argv[1], 1, &dev->on_frames));
  CHECK(napi_create_reference(env, argv[2], 1, &dev->on_error));
  CHECK(napi_create_reference(env, argv[0], 1, &dev->self));
  dev->poll = poll;
  rc = uv_poll_start(poll, UV_READABLE, on_readable);
  if (rc < 0) {
    stop_polling(dev);
    return throw_errno(env, -rc, "uv_poll_start", dev->name);
  }
  return NULL;
}

static napi_value js_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, "EINVAL", "write(handle, frames)");
    return NULL;
  }
  tap_dev *dev = get_dev(env, argv[0]);
  if (dev == NULL) return NULL;
  bool is_array = false;
  napi_is_array(env, argv[1], &is_array);
  if (!is_array) {
    napi_throw_type_error(env, "EINVAL", "write: frames must be an array of Uint8Array");
    return NULL;
  }
  uint32_t count = 0;
  CHECK(napi_get_array_length(env, argv[1], &count));
  uint32_t written = 0;
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    bool is_typed = false;
    CHECK(napi_get_element(env, argv[1], i, &element));
    napi_is_typedarray(env, element, &is_typed);
    if (!is_typed) {
      napi_throw_type_error(env, "EINVAL", "write: every frame must be a Uint8Array");
      return NULL;
    }
    napi_typedarray_type type;
    size_t length = 0;
    void *data = NULL;
    CHECK(napi_get_typedarray_info(env, element, &type, &length, &data, NULL, NULL));
    if (type != napi_uint8_array && type != napi_uint8_clamped_array) {
      napi_throw_type_error(env, "EINVAL", "write: every frame must be a Uint8Array");
      return NULL;
    }
    if (dev->fd < 0) {
      dev->tx_dropped += 1;
      continue;
    }
    ssize_t n;
    do {
      n = write(dev->fd, data, length);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)length) {
      dev->tx_frames += 1;
      dev->tx_bytes += (double)length;
      written++;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      dev->tx_dropped += 1; /* the kernel queue is full: drop and count, never block */
    } else {
      dev->tx_errors += 1;
      dev->last_errno = n < 0 ? errno : EIO;
    }
  }
  napi_value result;
  CHECK(napi_create_uint32(env, written, &result));
  return result;
}

static void set_number(napi_env env, napi_value object, const char *key, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  napi_set_named_property(env, object, key, v);
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "EINVAL", "stats(handle)");
    return NULL;
  }
  tap_dev *dev = get_dev(env, argv[0]);
  if (dev == NULL) return NULL;
  napi_value result;
  CHECK(napi_create_object(env, &result));
  set_number(env, result, "rxFrames", dev->rx_frames);
  set_number(env, result, "rxBytes", dev->rx_bytes);
  set_number(env, result, "rxBatches", dev->rx_batches);
  set_number(env, result, "rxErrors", dev->rx_errors);
  set_number(env, result, "txFrames", dev->tx_frames);
  set_number(env, result, "txBytes", dev->tx_bytes);
  set_number(env, result, "txDropped", dev->tx_dropped);
  set_number(env, result, "txErrors", dev->tx_errors);
  set_number(env, result, "lastErrno", dev->last_errno);
  return result;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "EINVAL", "close(handle)");
    return NULL;
  }
  tap_dev *dev = get_dev(env, argv[0]);
  if (dev == NULL) return NULL;
  stop_polling(dev);
  if (dev->fd >= 0) {
    close(dev->fd);
    dev->fd = -1;
  }
  return NULL;
}

/* ---- interface configuration through ioctls, optionally inside a netns ---- */

typedef int (*ifreq_op)(napi_env env, int sock, struct ifreq *ifr, napi_value *argv, napi_value *result);

static napi_value with_ifreq(napi_env env, napi_callback_info info, size_t nargs, ifreq_op op, const char *what) {
  size_t argc = 3;
  napi_value argv[3];
  char name[IFNAMSIZ];
  char netns[4096];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < nargs) {
    napi_throw_type_error(env, "EINVAL", what);
    return NULL;
  }
  if (get_string(env, argv[0], name, sizeof name, "interface name") < 0) return NULL;
  if (get_netns(env, argc, argv, nargs, netns, sizeof netns) < 0) return NULL;
  int saved;
  if (enter_netns(env, netns, &saved) < 0) return NULL;
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    int err = errno;
    leave_netns(saved);
    return throw_errno(env, err, "socket", "AF_INET");
  }
  leave_netns(saved); /* the socket stays bound to the namespace it was made in */
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strlen(name));
  napi_value result = NULL;
  int rc = op(env, sock, &ifr, argv, &result);
  close(sock);
  if (rc < 0) return NULL;
  return result;
}

static int op_set_mtu(napi_env env, int sock, struct ifreq *ifr, napi_value *argv, napi_value *result) {
  (void)result;
  int32_t mtu = 0;
  if (napi_get_value_int32(env, argv[1], &mtu) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "setMtu: mtu must be a number");
    return -1;
  }
  ifr->ifr_mtu = mtu;
  if (ioctl(sock, SIOCSIFMTU, ifr) < 0) {
    throw_errno(env, errno, "ioctl(SIOCSIFMTU)", ifr->ifr_name);
    return -1;
  }
  return 0;
}

static int op_set_mac(napi_env env, int sock, struct ifreq *ifr, napi_value *argv, napi_value *result) {
  (void)result;
  bool is_typed = false;
  napi_is_typedarray(env, argv[1], &is_typed);
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (!is_typed || napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array || length != 6) {
    napi_throw_type_error(env, "EINVAL", "setMac: mac must be a Uint8Array of 6 bytes");
    return -1;
  }
  ifr->ifr_hwaddr.sa_family = ARPHRD_ETHER;
  memcpy(ifr->ifr_hwaddr.sa_data, data, 6);
  if (ioctl(sock, SIOCSIFHWADDR, ifr) < 0) {
    throw_errno(env, errno, "ioctl(SIOCSIFHWADDR)", ifr->ifr_name);
    return -1;
  }
  return 0;
}

static int op_set_up(napi_env env, int sock, struct ifreq *ifr, napi_value *argv, napi_value *result) {
  (void)result;
  bool up = false;
  if (napi_get_value_bool(env, argv[1], &up) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "setUp: up must be a boolean");
    return -1;
  }
  if (ioctl(sock, SIOCGIFFLAGS, ifr) < 0) {
    throw_errno(env, errno, "ioctl(SIOCGIFFLAGS)", ifr->ifr_name);
    return -1;
  }
  if (up) {
    ifr->ifr_flags |= IFF_UP;
  } else {
    ifr->ifr_flags &= ~IFF_UP;
  }
  if (ioctl(sock, SIOCSIFFLAGS, ifr) < 0) {
    throw_errno(env, errno, "ioctl(SIOCSIFFLAGS)", ifr->ifr_name);
    return -1;
  }
  return 0;
}

static int op_get_info(napi_env env, int sock, struct ifreq *ifr, napi_value *argv, napi_value *result) {
  (void)argv;
  char name[IFNAMSIZ];
  memcpy(name, ifr->ifr_name, IFNAMSIZ);
  if (ioctl(sock, SIOCGIFMTU, ifr) < 0) {
    throw_errno(env, errno, "ioctl(SIOCGIFMTU)", name);
    return -1;
  }
  int mtu = ifr->ifr_mtu;
  if (ioctl(sock, SIOCGIFFLAGS, ifr) < 0) {
    throw_errno(env, errno, "ioctl(SIOCGIFFLAGS)", name);
    return -1;
  }
  int flags = ifr->ifr_flags;
  if (ioctl(sock, SIOCGIFHWADDR, ifr) < 0) {
    throw_errno(env, errno, "ioctl(SIOCGIFHWADDR)", name);
    return -1;
  }
  uint8_t mac[6];
  memcpy(mac, ifr->ifr_hwaddr.sa_data, 6);
  if (ioctl(sock, SIOCGIFINDEX, ifr) < 0) {
    throw_errno(env, errno, "ioctl(SIOCGIFINDEX)", name);
    return -1;
  }
  int index = ifr->ifr_ifindex;
  napi_value object, mac_value, up_value;
  void *mac_data = NULL;
  napi_create_object(env, &object);
  set_number(env, object, "mtu", mtu);
  set_number(env, object, "flags", flags);
  set_number(env, object, "index", index);
  napi_get_boolean(env, (flags & IFF_UP) != 0, &up_value);
  napi_set_named_property(env, object, "up", up_value);
  napi_create_buffer_copy(env, 6, mac, &mac_data, &mac_value);
  napi_set_named_property(env, object, "mac", mac_value);
  *result = object;
  return 0;
}

static napi_value js_set_mtu(napi_env env, napi_callback_info info) {
  return with_ifreq(env, info, 2, op_set_mtu, "setMtu(name, mtu, netnsPath?)");
}
static napi_value js_set_mac(napi_env env, napi_callback_info info) {
  return with_ifreq(env, info, 2, op_set_mac, "setMac(name, mac, netnsPath?)");
}
static napi_value js_set_up(napi_env env, napi_callback_info info) {
  return with_ifreq(env, info, 2, op_set_up, "setUp(name, up, netnsPath?)");
}
static napi_value js_get_info(napi_env env, napi_callback_info info) {
  return with_ifreq(env, info, 1, op_get_info, "getInfo(name, netnsPath?)");
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"start", NULL, js_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"write", NULL, js_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setMtu", NULL, js_set_mtu, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setMac", NULL, js_set_mac, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setUp", NULL, js_set_up, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getInfo", NULL, js_get_info, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
