/** `npm start -w @uffd/example-pagemap-tour`: prints the pagemap tour. */
import { runPagemapTour } from "./tour.ts";

const { lines } = await runPagemapTour();
for (const line of lines) console.log(line);
