# Builds dist/meshd and runs it from a small base image as a non-root user.
#   docker build -t meshd .
#   docker run --rm -p 15010:15010 -p 15012:15012 -p 15017:15017 -p 15020:15020 meshd
# The admin server (debug handlers, writes, console) stays on the container's loopback at 15014;
# the meshd tools reach it inside the container (`docker exec CONTAINER meshd proxy-status`).
# Scrapers read the read-only metrics listener on 15020 (GET /metrics, /healthz/ready, /healthz/live).
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY proto ./proto
RUN npm ci
COPY . .
RUN npm run build

# The compiled binary needs only glibc and libstdc++; distroless/cc carries both and no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/dist/meshd /usr/local/bin/meshd
COPY --from=build /src/config/samples /etc/meshd/samples
USER 65532:65532
EXPOSE 15010 15012 15017 15020
VOLUME ["/var/lib/meshd"]
ENTRYPOINT ["/usr/local/bin/meshd"]
CMD ["serve", "--admin-addr=127.0.0.1:15014", "--metrics-addr=0.0.0.0:15020", "--data-dir=/var/lib/meshd", "--config-dir=/etc/meshd/samples"]
