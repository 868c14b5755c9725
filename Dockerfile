# sp-bridge container image.
#
#   docker build -t sp-bridge .
#   docker run -p 8080:8080 -v sp-data:/data -v "$PWD/deploy:/config:ro" \
#     -e AUTH_CLIENTS_FILE=/config/clients.yaml sp-bridge
#
# See README.md, "Deployment". CI cannot run Docker: scripts/docker-smoke.js parses this file and replays the build
# stage's COPY and RUN lines and the runtime stage's COPY, ENV, HEALTHCHECK and CMD outside Docker, so keep
# each RUN a plain one-line shell command, COPY sources relative, and CMD/HEALTHCHECK in exec (JSON) form.
# The Node major here is the one .ci/run tests on (IMAGE_NODE_VERSION); test/deploy.test.ts keeps them equal.

# ---- build: compile TypeScript with every dependency, then drop the dev ones ----------------------------
FROM node:26-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: package.json's `prepare` would run the build before the sources are here; no production
# dependency needs an install script.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
COPY profiles ./profiles
COPY terminology ./terminology
RUN npm run build
RUN npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime: production dependencies, compiled code and the shipped definitions, as a non-root user ----
FROM node:26-bookworm-slim AS runtime
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 DATA_DIR=/data
WORKDIR /app
# Owned by root and not writable by the service: only /data is.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/package.json ./dist/package.json
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/bin ./bin
COPY --from=build /app/profiles ./profiles
COPY --from=build /app/terminology ./terminology
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME /data
EXPOSE 8080
# Ready = database reachable and migrated (GET /readyz answers 200). The slim image has no curl: node fetches.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/readyz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/src/server.js"]
