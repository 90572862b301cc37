/*
 * Contour boxes of every level set of a uint8 map, in two union-find passes.
 *
 * For a present value v, the protocol's contours of {q >= v} are one outer contour per
 * 8-connected component of the set and one hole contour per 4-connected component of its
 * complement {q < v} that does not reach the image edge (cv2.findContours pads the image with
 * background). Adding pixels in order of value builds these components for every level at once:
 *
 *   outer pass: pixels from the highest value down, joined to their 8 neighbours;
 *   hole pass:  pixels from the lowest value up, joined to their 4 neighbours, the padding ring
 *               being one component that marks whatever joins it as touching the edge.
 *
 * A component's box changes only when it grows past its box or merges. Each box is written once,
 * with the first and last wanted level at which the component had it, so the output holds every
 * box of every wanted level without repeating unchanged boxes from level to level.
 *
 * Python API: level_boxes(q, wanted, holes) -> bytes of int64 records
 *   (x0, y0, x1, y1, first, last): the protocol box (x, y, x + w, y + h clamped to W - 1 and
 *   H - 1) and the range of wanted levels, as indices into the ascending wanted values.
 * q: C-contiguous 2-D uint8 buffer; wanted: 256 bytes, non-zero for the values v whose set
 * {q >= v} is wanted (each present in q); holes: whether to run the hole pass.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The largest map side: padded coordinates (side + 2) fit in 16 bits. */
#define MAX_SIDE 65533

typedef struct {
    int64_t *data; /* records of 6 int64 */
    size_t count;
    size_t capacity;
} Records;

/* A component, created when a pixel is added with no added neighbour. Components are numbered
 * densely and joined by a union-find of their own: a pixel keeps the number its component had
 * when it was added, and the small component tables stay in cache where a union-find over the
 * pixels would chase parents across the image. */
typedef struct {
    int32_t x0, y0, x1, y1; /* pixel box, padded coordinates */
    int32_t size;
    int32_t seen;  /* first wanted level (processing order) with the current box; -1: none */
    uint8_t dirty; /* in the dirty list: changed or created since the last wanted level */
    uint8_t edge;  /* hole pass: the component reaches the image edge (no hole contour) */
    uint8_t alive; /* not merged into another */
} Component;

typedef struct {
    int32_t *label;  /* per padded cell: -1 not added, else a component (maybe merged since) */
    int32_t *parent; /* per component: the one it was merged into; itself for a root */
    Component *components;
    int32_t count;   /* components created in this pass */
    int32_t *dirty_list;
    int32_t dirty_count;
    int32_t width, height;
    int holes;       /* which pass: box conversion */
    int32_t levels;  /* wanted levels snapshotted so far */
    int32_t total;   /* wanted levels of the pass */
    Records *out;
    int failed;
} Pass;

static void records_push(Pass *pass, const Component *c, int32_t last_level)
{
    Records *out = pass->out;
    if (out->count == out->capacity) {
        size_t capacity = out->capacity ? out->capacity * 2 : 1024;
        int64_t *grown = realloc(out->data, capacity * 6 * sizeof(int64_t));
        if (grown == NULL) {
            pass->failed = 1;
            return;
        }
        out->data = grown;
        out->capacity = capacity;
    }
    /* Padded coordinates are one more than the image's. */
    int64_t x0 = c->x0 - 1, y0 = c->y0 - 1, x1 = c->x1 - 1, y1 = c->y1 - 1;
    int64_t right = pass->width - 1, bottom = pass->height - 1;
    int64_t *r = out->data + 6 * out->count;
    if (pass->holes) {
        /* The hole contour runs on the pixels around the hole: its pixel box grows by one. */
        r[0] = x0 - 1;
        r[1] = y0 - 1;
        r[2] = x1 + 2 < right ? x1 + 2 : right;
        r[3] = y1 + 2 < bottom ? y1 + 2 : bottom;
        r[4] = c->seen;
        r[5] = last_level;
    } else {
        r[0] = x0;
        r[1] = y0;
        r[2] = x1 + 1 < right ? x1 + 1 : right;
        r[3] = y1 + 1 < bottom ? y1 + 1 : bottom;
        /* the outer pass walks the levels downwards: ascending indices */
        r[4] = pass->total - 1 - last_level;
        r[5] = pass->total - 1 - c->seen;
    }
    out->count++;
}

/* The root of a component (path halving on the way). */
static inline int32_t find(int32_t *parent, int32_t id)
{
    while (parent[id] != id) {
        parent[id] = parent[parent[id]];
        id = parent[id];
    }
    return id;
}

/* The component's box is about to change: write the box it had, if a wanted level saw it, and
 * queue it for the next one. */
static inline void retire(Pass *pass, int32_t id)
{
    Component *c = pass->components + id;
    if (c->seen >= 0) {
        records_push(pass, c, pass->levels - 1);
        c->seen = -1;
    }
    if (!c->dirty) {
        c->dirty = 1;
        pass->dirty_list[pass->dirty_count++] = id;
    }
}

static inline void extend(Pass *pass, int32_t id, int32_t x, int32_t y)
{
    Component *c = pass->components + id;
    c->size += 1;
    if (x < c->x0 || y < c->y0 || x > c->x1 || y > c->y1) {
        if (!c->edge)
            retire(pass, id);
        if (x < c->x0) c->x0 = x;
        if (y < c->y0) c->y0 = y;
        if (x > c->x1) c->x1 = x;
        if (y > c->y1) c->y1 = y;
    }
}

/* Merge two distinct components; returns the surviving one (the larger). */
static int32_t merge(Pass *pass, int32_t a, int32_t b)
{
    Component *ca = pass->components + a, *cb = pass->components + b;
    if (ca->size < cb->size) {
        Component *swap = ca;
        ca = cb;
        cb = swap;
        int32_t index = a;
        a = b;
        b = index;
    }
    if (!cb->edge && cb->seen >= 0)
        records_push(pass, cb, pass->levels - 1);
    cb->seen = -1;
    cb->alive = 0;
    pass->parent[b] = a;
    ca->size += cb->size;
    if (cb->edge && !ca->edge) {
        retire(pass, a); /* no longer a hole */
        ca->edge = 1;
    }
    if (cb->x0 < ca->x0 || cb->y0 < ca->y0 || cb->x1 > ca->x1 || cb->y1 > ca->y1) {
        if (!ca->edge)
            retire(pass, a);
        if (cb->x0 < ca->x0) ca->x0 = cb->x0;
        if (cb->y0 < ca->y0) ca->y0 = cb->y0;
        if (cb->x1 > ca->x1) ca->x1 = cb->x1;
        if (cb->y1 > ca->y1) ca->y1 = cb->y1;
    }
    return a;
}

static int32_t new_component(Pass *pass, int32_t cell, int32_t x, int32_t y)
{
    int32_t id = pass->count++;
    Component *c = pass->components + id;
    c->x0 = c->x1 = x;
    c->y0 = c->y1 = y;
    c->size = 1;
    c->seen = -1;
    c->edge = 0;
    c->alive = 1;
    c->dirty = 1;
    pass->dirty_list[pass->dirty_count++] = id;
    pass->parent[id] = id;
    pass->label[cell] = id;
    return id;
}

/* The 8 neighbours in ring order: NW, N, NE, E, SE, S, SW, W. Each is 4-adjacent to the next,
 * so neighbours that are consecutive on the ring and already added are already one component:
 * the new pixel needs one find per run of added neighbours (one, most often), not one per
 * neighbour. For the 4-connected hole pass, two 4-neighbours are already joined when the corner
 * between them is added. representatives[c][mask] lists one neighbour (ring index) per group,
 * for connectivity c (0: 8-connected, 1: 4-connected) and the mask of added neighbours. */
static uint8_t representative_count[2][256];
static uint8_t representatives[2][256][4];

static void build_tables(void)
{
    for (int mask = 0; mask < 256; mask++) {
        int n = 0;
        if (mask == 0xff) {
            representatives[0][mask][n++] = 0;
        } else {
            for (int k = 0; k < 8; k++) { /* a run starts where the previous one is not added */
                if ((mask >> k & 1) && !(mask >> ((k + 7) % 8) & 1))
                    representatives[0][mask][n++] = (uint8_t)k;
            }
        }
        representative_count[0][mask] = (uint8_t)n;
        n = 0;
        /* N, E, S, W are ring indices 1, 3, 5, 7; the corner before each is k - 1. */
        int all_joined = (mask & 0xff) == 0xff;
        for (int k = 1; k < 8; k += 2) {
            if (!(mask >> k & 1))
                continue;
            int previous = (k + 6) % 8, corner = (k + 7) % 8;
            if (all_joined ? k != 1 : ((mask >> previous & 1) && (mask >> corner & 1)))
                continue; /* joined to the previous edge neighbour through the corner */
            representatives[1][mask][n++] = (uint8_t)k;
        }
        representative_count[1][mask] = (uint8_t)n;
    }
}

/* Add pixel p (padded index; padded coordinates packed as y << 16 | x); ring holds the 8
 * neighbour offsets in ring order. */
static inline void add_pixel(Pass *pass, int32_t p, uint32_t xy, const int32_t *ring,
                             int connectivity)
{
    const int32_t *label = pass->label;
    unsigned mask = 0;
    for (int k = 0; k < 8; k++)
        mask |= (unsigned)(label[p + ring[k]] != -1) << k;
    int32_t x = (int32_t)(xy & 0xffff), y = (int32_t)(xy >> 16);
    int count = representative_count[connectivity][mask];
    if (count == 0) {
        new_component(pass, p, x, y);
        return;
    }
    const uint8_t *which = representatives[connectivity][mask];
    int32_t id = find(pass->parent, label[p + ring[which[0]]]);
    extend(pass, id, x, y);
    for (int i = 1; i < count; i++) {
        int32_t other = find(pass->parent, label[p + ring[which[i]]]);
        if (other != id)
            id = merge(pass, id, other);
    }
    pass->label[p] = id;
}

/* A wanted level is complete: every changed or new component that gives a contour takes it
 * as the first level of its current box. */
static void snapshot(Pass *pass)
{
    for (int32_t i = 0; i < pass->dirty_count; i++) {
        Component *c = pass->components + pass->dirty_list[i];
        c->dirty = 0;
        if (c->alive && c->seen < 0 && !c->edge)
            c->seen = pass->levels;
    }
    pass->dirty_count = 0;
    pass->levels++;
}

/* Write the boxes still alive after the last wanted level. */
static void flush(Pass *pass)
{
    for (int32_t id = 0; id < pass->count; id++) {
        const Component *c = pass->components + id;
        if (c->alive && c->seen >= 0 && !c->edge)
            records_push(pass, c, pass->levels - 1);
    }
}

static int run(const uint8_t *q, int32_t height, int32_t width, const uint8_t *wanted, int holes,
               Records *out)
{
    int32_t pw = width + 2, ph = height + 2;
    size_t cells = (size_t)pw * (size_t)ph, pixels = (size_t)width * (size_t)height;
    size_t start[257] = {0};
    int total = 0, lowest = -1, highest = -1;
    for (int v = 0; v < 256; v++) {
        if (wanted[v]) {
            total++;
            if (lowest < 0) lowest = v;
            highest = v;
        }
    }
    if (total == 0)
        return 0;

    /* Counting sort of the pixels by value (row-major within a value): padded indices and
     * padded coordinates. */
    size_t histogram[256] = {0};
    for (size_t i = 0; i < pixels; i++)
        histogram[q[i]]++;
    for (int v = 0; v < 256; v++)
        start[v + 1] = start[v] + histogram[v];
    int32_t *order = malloc(pixels * sizeof(int32_t));
    uint32_t *coordinates = malloc(pixels * sizeof(uint32_t));
    int32_t *label = malloc(cells * sizeof(int32_t));
    /* at most one component per pixel, and the padding ring's */
    int32_t *parent = malloc((pixels + 1) * sizeof(int32_t));
    Component *components = malloc((pixels + 1) * sizeof(Component));
    int32_t *dirty_list = malloc((pixels + 1) * sizeof(int32_t));
    int status = -1;
    if (!order || !coordinates || !label || !parent || !components || !dirty_list)
        goto done;
    {
        size_t next[256];
        memcpy(next, start, sizeof(next));
        for (int32_t y = 0; y < height; y++) {
            const uint8_t *row = q + (size_t)y * width;
            for (int32_t x = 0; x < width; x++) {
                size_t slot = next[row[x]]++;
                order[slot] = (y + 1) * pw + (x + 1);
                coordinates[slot] = ((uint32_t)(y + 1) << 16) | (uint32_t)(x + 1);
            }
        }
    }

    Pass pass = {label, parent, components, 0, dirty_list, 0, width, height, 0, 0, total, out, 0};
    const int32_t ring[8] = {-pw - 1, -pw, -pw + 1, 1, pw + 1, pw, pw - 1, -1};

    /* Outer pass: 8-connected components of {q >= v}, v from the highest wanted value down. */
    for (size_t i = 0; i < cells; i++)
        label[i] = -1;
    for (int v = 255; v >= lowest; v--) {
        for (size_t i = start[v]; i < start[v + 1]; i++)
            add_pixel(&pass, order[i], coordinates[i], ring, 0);
        if (wanted[v])
            snapshot(&pass);
    }
    flush(&pass);

    /* Hole pass: 4-connected components of {q < v}, v from the lowest wanted value up; the
     * padding ring is one component, reaching the edge, rooted at the padded corner. */
    if (holes && !pass.failed) {
        for (size_t i = 0; i < cells; i++)
            label[i] = -1;
        pass.holes = 1;
        pass.levels = 0;
        pass.count = 0;
        pass.dirty_count = 0;
        int32_t outside = new_component(&pass, 0, 0, 0);
        components[outside].x1 = pw - 1;
        components[outside].y1 = ph - 1;
        components[outside].size = 2 * (pw + ph);
        components[outside].edge = 1;
        for (int32_t x = 0; x < pw; x++) {
            label[x] = outside;
            label[(size_t)(ph - 1) * pw + x] = outside;
        }
        for (int32_t y = 0; y < ph; y++) {
            label[(size_t)y * pw] = outside;
            label[(size_t)y * pw + pw - 1] = outside;
        }
        for (int v = 0; v <= highest; v++) {
            if (wanted[v])
                snapshot(&pass);
            if (v == highest)
                break;
            for (size_t i = start[v]; i < start[v + 1]; i++)
                add_pixel(&pass, order[i], coordinates[i], ring, 1);
        }
        flush(&pass);
    }
    status = pass.failed ? -1 : 0;

done:
    free(order);
    free(coordinates);
    free(label);
    free(parent);
    free(components);
    free(dirty_list);
    return status;
}

static PyObject *level_boxes(PyObject *self, PyObject *args)
{
    PyObject *map_object, *wanted_object;
    int holes;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOp", &map_object, &wanted_object, &holes))
        return NULL;
    Py_buffer map, wanted;
    if (PyObject_GetBuffer(map_object, &map, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    if (PyObject_GetBuffer(wanted_object, &wanted, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&map);
        return NULL;
    }
    PyObject *result = NULL;
    if (map.ndim != 2 || map.itemsize != 1 || (map.format && strcmp(map.format, "B") != 0)) {
        PyErr_SetString(PyExc_ValueError, "q must be a 2-D uint8 buffer");
        goto release;
    }
    if (wanted.len != 256) {
        PyErr_SetString(PyExc_ValueError, "wanted must hold 256 bytes");
        goto release;
    }
    Py_ssize_t height = map.shape[0], width = map.shape[1];
    /* Padded coordinates are packed in 16 bits each; cell indices and counts are int32. */
    if (height < 1 || width < 1 || height > MAX_SIDE || width > MAX_SIDE ||
        (height + 2) > INT32_MAX / (width + 2)) {
        PyErr_Format(PyExc_ValueError,
                     "q must be non-empty, at most %d pixels a side and under 2**31 padded "
                     "pixels", MAX_SIDE);
        goto release;
    }
    /* Every wanted value must be present, or its level would be missing from the output. */
    {
        const uint8_t *q = map.buf, *w = wanted.buf;
        uint8_t present[256] = {0};
        for (Py_ssize_t i = 0; i < height * width; i++)
            present[q[i]] = 1;
        for (int v = 0; v < 256; v++) {
            if (w[v] && !present[v]) {
                PyErr_Format(PyExc_ValueError, "wanted value %d is not present in q", v);
                goto release;
            }
        }
    }
    Records out = {NULL, 0, 0};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run(map.buf, (int32_t)height, (int32_t)width, wanted.buf, holes, &out);
    Py_END_ALLOW_THREADS
    if (status < 0)
        PyErr_NoMemory();
    else
        result = PyBytes_FromStringAndSize((const char *)out.data,
                                           (Py_ssize_t)(out.count * 6 * sizeof(int64_t)));
    free(out.data);

release:
    PyBuffer_Release(&wanted);
    PyBuffer_Release(&map);
    return result;
}

static PyMethodDef methods[] = {
    {"level_boxes", level_boxes, METH_VARARGS,
     "level_boxes(q, wanted, holes) -> bytes of int64 (x0, y0, x1, y1, first, last) records."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_union_find",
    "Contour boxes of every level set of a uint8 map in two union-find passes.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__union_find(void)
{
    build_tables();
    return PyModule_Create(&module);
}
